"""Contrastive pretexts of SSLModule: augmented views, BYOL and Barlow Twins heads and losses."""

from __future__ import annotations

import copy

import torch
from scvi.module.base import LossOutput
from torch import nn

from scssl.nn import View
from scssl.nn import _contrastive as heads

DEFAULT_VIEWS = {
    "byol": (("negbin", "dropout"), ("negbin", "dropout")),
    "barlow_twins": (("negbin", "dropout"), ()),
}


class ContrastivePretextMixin:
    """Views, heads and losses of ``byol`` and ``barlow_twins`` (methods of :class:`SSLModule`)."""

    def _init_contrastive(self, views, augmentation: dict, byol: dict, barlow_twins: dict):
        views = DEFAULT_VIEWS[self.pretext] if views is None else views
        if len(views) != 2:
            raise ValueError(f"views must give the augmentations of 2 views, got {views!r}.")
        self.views = nn.ModuleList(View(names, **augmentation) for names in views)
        if self.pretext == "byol":
            hidden, dim = byol["projection_hidden"], byol["projection_dim"]
            self.projector = heads.byol_head(self.n_latent, hidden, dim)
            self.predictor = heads.byol_head(dim, hidden, dim)
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
            self.ema_decay_base = byol["ema_decay_base"]
            self.ema_cosine = byol["ema_cosine"]
        else:
            sizes = barlow_twins["projector_sizes"]
            self.projector = heads.barlow_twins_projector(self.n_latent, sizes)
            self.bn = nn.BatchNorm1d(sizes[-1], affine=False)
            self.lambda_offdiag = barlow_twins["lambda_offdiag"]

    def _contrastive_inference(
        self, x_norm: torch.Tensor, batch_index: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        view_1, view_2 = (view(x_norm) for view in self.views)
        h_1, h_2 = self.encode(view_1, batch_index), self.encode(view_2, batch_index)
        if self.pretext == "barlow_twins":
            return {
                "z": h_1,
                "projection_1": self.projector(h_1),
                "projection_2": self.projector(h_2),
            }
        with torch.no_grad():
            target_1 = self.target_projector(
                self.encode(view_1, batch_index, encoder=self.target_encoder)
            )
            target_2 = self.target_projector(
                self.encode(view_2, batch_index, encoder=self.target_encoder)
            )
        return {
            "z": h_1,
            "prediction_1": self.predictor(self.projector(h_1)),
            "prediction_2": self.predictor(self.projector(h_2)),
            "target_1": target_1,
            "target_2": target_2,
        }

    def _contrastive_loss(self, inference_outputs: dict) -> LossOutput:
        # in float32 also under bf16 autocast
        outputs = {k: v.float() for k, v in inference_outputs.items() if k != "z"}
        if self.pretext == "byol":
            per_cell = heads.byol_loss(
                outputs["prediction_1"], outputs["target_2"]
            ) + heads.byol_loss(outputs["prediction_2"], outputs["target_1"])
            return LossOutput(loss=per_cell.mean(), reconstruction_loss=per_cell)
        projection_1 = outputs["projection_1"]
        with torch.autocast(projection_1.device.type, enabled=False):
            loss = heads.barlow_twins_loss(
                projection_1, outputs["projection_2"], self.bn, self.lambda_offdiag
            )
        return LossOutput(loss=loss, n_obs_minibatch=projection_1.shape[0])

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int | None = None) -> float | None:
        """BYOL: move the target network towards the online one; returns the decay used."""
        if self.pretext != "byol":
            return None
        decay = heads.ema_decay(self.ema_decay_base, step, total_steps, self.ema_cosine)
        heads.ema_update(self.target_encoder, self.encoder, decay)
        heads.ema_update(self.target_projector, self.projector, decay)
        return decay
