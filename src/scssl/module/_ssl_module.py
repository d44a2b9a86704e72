"""The torch module behind :class:`scssl.model.SSLEncoder`."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial
from scvi.module.base import LossOutput, auto_move_data
from torch import nn

from scssl.data._normalize import TARGET_SUM
from scssl.nn import (
    DEFAULT_N_HIDDEN,
    DEFAULT_N_LATENT,
    BatchAdversary,
    GeneProgrammeMask,
    ProgrammeToTFMask,
    RandomMask,
    SparseInputLinear,
    View,
    barlow_twins_loss,
    barlow_twins_projector,
    byol_head,
    byol_loss,
    ema_decay,
    ema_update,
    mlp,
)
from scssl.nn._sparse import to_dense

from ._base import EncoderModule

Pretext = Literal["random_mask", "gene_programme_mask", "programme_to_tf", "byol", "barlow_twins"]
Likelihood = Literal["mse", "nb"]
PRETEXTS: tuple[str, ...] = get_args(Pretext)
MASKED_PRETEXTS = PRETEXTS[:3]
CONTRASTIVE_PRETEXTS = PRETEXTS[3:]
LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)
DEFAULT_VIEWS = {
    "byol": (("negbin", "dropout"), ("negbin", "dropout")),
    "barlow_twins": (("negbin", "dropout"), ()),
}


class SSLModule(EncoderModule):
    """MLP encoder pretrained with a self-supervised pretext task.

    Masked pretexts (``random_mask``, ``gene_programme_mask``, ``programme_to_tf``) add a
    decoder that mirrors the encoder and reconstruct hidden expression. Contrastive pretexts
    (``byol``, ``barlow_twins``) add projection heads and compare two augmented views.

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_batch
        Number of batches; with more than one, the decoder receives a one-hot batch covariate.
    n_labels, n_continuous_cov, n_cats_per_cov
        Accepted for scvi-tools' datamodule path; unused.
    pretext
        One of :data:`PRETEXTS`.
    likelihood
        Reconstruction loss of masked pretexts: ``"mse"`` on log1p-normalised expression, or
        ``"nb"``: negative-binomial log-likelihood of the counts, mean ``softmax(decoder) *
        library size`` and per-gene inverse dispersion ``exp(px_r)``.
    n_latent
        Embedding size.
    n_hidden
        Hidden layer sizes of the encoder; the decoder mirrors them.
    dropout_rate
        Dropout after every hidden activation.
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    mask_rate
        ``random_mask``: share of genes masked per cell; ``gene_programme_mask``: share of
        programmes masked per minibatch.
    log_normalized
        The input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.
    programme_members
        Boolean ``(n_programmes, n_input)`` gene-programme (or TF-target) membership.
    tf_index
        ``programme_to_tf``: vocabulary index of each programme's TF.
    tf_rest_weight
        ``programme_to_tf``: weight of the other hidden genes relative to the TF in the loss
        (0 = the TF only).
    views
        Contrastive pretexts: augmentations of the two views, e.g.
        ``(("negbin", "dropout"), ())`` (the study's Barlow Twins views).
    negbin_intensity, dropout_intensity
        Strength of the augmentations.
    projection_hidden, projection_dim
        BYOL projector and predictor sizes.
    ema_decay_base, ema_cosine
        BYOL target update: ``target <- d * target + (1 - d) * online`` after every optimiser
        step, ``d`` constant or raised to 1 on a cosine schedule.
    projector_sizes, lambda_offdiag
        Barlow Twins projector sizes and off-diagonal weight.
    batch_centering
        With several batches: subtract each batch's mean log1p expression (relative to the mean
        of all training cells) from the input, and from the reconstruction target of MSE
        pretexts, so that additive batch shifts never reach the encoder (batch integration).
        The means are the buffer ``batch_means`` (set by the model from its data) and
        ``reference_mean``; the shift is applied as an offset of the first layer, so sparse
        input stays sparse.
    batch_adversary_weight
        With several batches and a weight above 0: a batch classifier learns to tell each
        cell's batch from its embedding, and the encoder learns, with this weight, to leave the
        classifier guessing uniformly (:class:`scssl.nn.BatchAdversary`). It removes batch
        effects that differ between cell types, which centring cannot.

    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        *,
        pretext: Pretext = "random_mask",
        likelihood: Likelihood = "mse",
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float = 0.1,
        activation: str = "selu",
        mask_rate: float = 0.5,
        log_normalized: bool = False,
        programme_members: np.ndarray | None = None,
        tf_index: np.ndarray | None = None,
        tf_rest_weight: float = 1.0,
        views: Sequence[Sequence[str]] | None = None,
        negbin_intensity: float = 0.1,
        dropout_intensity: float = 0.1,
        projection_hidden: int = 4096,
        projection_dim: int = 256,
        ema_decay_base: float = 0.99,
        ema_cosine: bool = False,
        projector_sizes: Sequence[int] = (256, 256, 512, 512),
        lambda_offdiag: float = 0.0051,
        batch_centering: bool = False,
        batch_adversary_weight: float = 0.0,
    ):
        super().__init__(
            n_input,
            n_latent=n_latent,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            activation=activation,
            log_normalized=log_normalized,
        )
        if pretext not in PRETEXTS:
            raise ValueError(f"pretext={pretext!r} is not known; choose one of {list(PRETEXTS)}.")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r}; choose one of {list(LIKELIHOODS)}.")
        if likelihood == "nb" and pretext not in MASKED_PRETEXTS:
            raise ValueError(f"likelihood='nb' needs a masked pretext, not {pretext!r}.")
        if likelihood == "nb" and log_normalized:
            raise ValueError(
                "likelihood='nb' models counts, but the data were registered with "
                "log_normalized=True. Register raw counts, or use likelihood='mse'."
            )
        self.pretext = pretext
        self.likelihood = likelihood
        self.n_batch = n_batch
        self.tf_rest_weight = tf_rest_weight
        self.n_batch_covariate = n_batch if n_batch > 1 else 0
        self.batch_centering = bool(batch_centering and self.n_batch_covariate)
        if self.batch_centering:
            self.register_buffer("batch_means", torch.zeros(self.n_batch_covariate, n_input))
            self.register_buffer("reference_mean", torch.zeros(n_input))
        if batch_adversary_weight < 0:
            raise ValueError(f"batch_adversary_weight={batch_adversary_weight}; give 0 or more.")
        if batch_adversary_weight and not self.n_batch_covariate:
            warnings.warn(
                f"batch_adversary_weight={batch_adversary_weight} is ignored: the data hold one "
                "batch. Register a batch_key with several batches in setup_anndata.",
                UserWarning,
                stacklevel=3,
            )
        self.batch_adversary_weight = (
            float(batch_adversary_weight) if self.n_batch_covariate else 0.0
        )
        if self.batch_adversary_weight:
            self.batch_adversary = BatchAdversary(n_latent, self.n_batch_covariate)
        if pretext in MASKED_PRETEXTS:
            self.decoder = mlp(
                n_latent + self.n_batch_covariate,
                list(reversed(n_hidden)),
                n_input,
                activation=activation,
                dropout_rate=dropout_rate,
            )
            if likelihood == "nb":
                self.px_r = nn.Parameter(torch.zeros(n_input))
            self.masking = self._make_masking(pretext, mask_rate, programme_members, tf_index)
        else:
            views = DEFAULT_VIEWS[pretext] if views is None else views
            if len(views) != 2:
                raise ValueError(f"views must give the augmentations of 2 views, got {views!r}.")
            self.views = nn.ModuleList(
                View(names, negbin_intensity, dropout_intensity) for names in views
            )
            if pretext == "byol":
                self.projector = byol_head(n_latent, projection_hidden, projection_dim)
                self.predictor = byol_head(projection_dim, projection_hidden, projection_dim)
                self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
                self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
                self.ema_decay_base = ema_decay_base
                self.ema_cosine = ema_cosine
            else:
                self.projector = barlow_twins_projector(n_latent, projector_sizes)
                self.bn = nn.BatchNorm1d(projector_sizes[-1], affine=False)
                self.lambda_offdiag = lambda_offdiag

    @staticmethod
    def _make_masking(pretext, mask_rate, members, tf_index) -> nn.Module:
        if pretext == "random_mask":
            return RandomMask(mask_rate)
        if members is None:
            raise ValueError(f"pretext={pretext!r} needs gene programmes (programme_members).")
        if pretext == "gene_programme_mask":
            return GeneProgrammeMask(torch.as_tensor(members), mask_rate)
        if tf_index is None:
            raise ValueError("pretext='programme_to_tf' needs the TF of each programme (tf_index).")
        return ProgrammeToTFMask(torch.as_tensor(members), torch.as_tensor(tf_index))

    @property
    def has_decoder(self) -> bool:
        """Whether the pretext reconstructs expression (masked pretexts)."""
        return self.pretext in MASKED_PRETEXTS

    # ------------------------------------------------------------ inference
    def batch_deltas(self) -> torch.Tensor | None:
        """Per-batch shift of the mean log1p expression from the reference, ``(n_batch, G)``."""
        if not self.batch_centering:
            return None
        return self.batch_means - self.reference_mean

    def encode(
        self,
        x_norm: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        deltas: torch.Tensor | None = None,
        encoder: nn.Sequential | None = None,
        input_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode ``x_norm - deltas[batch_index]`` (or ``x_norm`` without batch centring).

        The subtraction is folded into the first layer (``W x - W delta``), so a sparse
        ``x_norm`` stays sparse. ``deltas`` defaults to the training batches' shifts. For a
        masked ``x_norm``, ``input_weight`` (``(n_cells, G)``: 0 where masked, the keep scale
        elsewhere) centres only what the encoder sees: masked entries stay 0 instead of
        showing ``-delta``, which would tell the encoder the batch.
        """
        encoder = self.encoder if encoder is None else encoder
        deltas = self.batch_deltas() if deltas is None else deltas
        if deltas is None:
            return encoder(x_norm)
        if batch_index is None:
            raise ValueError(
                "This encoder centres each batch (batch_centering=True); pass each cell's batch."
            )
        first = encoder[0]
        weight = first.weight if isinstance(first, SparseInputLinear) else first.weight.T
        cell_deltas_index = batch_index.view(-1).long()
        if input_weight is None:
            shift = (deltas @ weight)[cell_deltas_index]
        else:
            shift = (input_weight * deltas[cell_deltas_index]) @ weight
        return encoder[1:](first(x_norm) - shift)

    @auto_move_data
    def embed(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        deltas: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embedding of unmasked cells (call in eval mode for deterministic output).

        ``deltas`` replaces the training batches' shifts, for cells of new batches.
        """
        return self.encode(self.normalize(x), batch_index, deltas)

    @auto_move_data
    def reconstruct(
        self, x: torch.Tensor, batch_index: torch.Tensor | None = None, counts: bool = False
    ) -> torch.Tensor:
        """Reconstruction of unmasked cells: log1p-normalised values, or expected counts."""
        if not self.has_decoder:
            raise ValueError(
                f"pretext={self.pretext!r} has no decoder; reconstruction needs a masked pretext "
                "(random_mask, gene_programme_mask or programme_to_tf)."
            )
        library = x.sum(dim=1, keepdim=True).to_dense() if not self.log_normalized else None
        decoded = self.decode(self.embed(x, batch_index), batch_index)
        if self.batch_centering and self.likelihood == "mse":
            decoded = decoded + self.batch_deltas()[batch_index.view(-1).long()]
        if self.likelihood == "nb":
            share = torch.softmax(decoded, dim=-1)
            return share * library if counts else torch.log1p(share * TARGET_SUM)
        if counts:
            if library is None:
                raise ValueError("Expected counts need raw counts; the data are log-normalised.")
            return torch.expm1(decoded).clamp(min=0.0) * library / TARGET_SUM
        return decoded

    def decode(self, z: torch.Tensor, batch_index: torch.Tensor | None) -> torch.Tensor:
        """Decoder output, with the one-hot batch covariate when there are several batches."""
        if self.n_batch_covariate:
            one_hot = F.one_hot(batch_index.view(-1).long(), self.n_batch_covariate).to(z.dtype)
            z = torch.cat([z, one_hot], dim=-1)
        return self.decoder(z)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        if not self.has_decoder:
            return {"z": inference_outputs["z"]}
        return {"z": inference_outputs["z"], "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY)}

    @auto_move_data
    def inference(
        self, x: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Normalise, then mask (masked pretexts) or augment twice (contrastive) and encode."""
        x_norm = self.normalize(x)
        if not self.has_decoder:
            return self._contrastive_inference(x_norm, batch_index)
        out = {"x_norm": x_norm}
        if self.pretext == "programme_to_tf":
            masked_input, kept, tf = self.masking(x_norm)
            out["loss_weight"] = self._tf_loss_weight(kept, tf)
            input_weight = kept.to(x_norm.dtype)
        else:
            masked_input, mask = self.masking(x_norm)
            out["loss_weight"] = mask.to(x_norm.dtype)
            input_weight = self._keep_scale(mask).to(x_norm.dtype)
        if not self.batch_centering:
            input_weight = None
        out["z"] = self.encode(masked_input, batch_index, input_weight=input_weight)
        if self.batch_centering and self.likelihood == "mse":
            out["target_shift"] = self.batch_deltas()[batch_index.view(-1).long()]
        if self.likelihood == "nb":
            out["counts"] = to_dense(x)
        return out

    def _keep_scale(self, mask: torch.Tensor) -> torch.Tensor:
        """Factor of each input entry after masking: 0 where masked, the keep scale elsewhere."""
        if isinstance(self.masking, RandomMask):
            scale = 1.0 / (1.0 - self.masking.rate)
        else:  # gene programmes: the scale depends on the share hidden in this minibatch
            scale = 1.0 / (1.0 - mask[0].float().mean()).clamp(min=1e-6)
        return (~mask) * scale

    def _tf_loss_weight(self, kept: torch.Tensor, tf: torch.Tensor) -> torch.Tensor:
        """Weight 1 on each cell's TF, ``tf_rest_weight`` shared by the other hidden genes."""
        tf_one_hot = F.one_hot(tf, self.n_input).to(torch.bool)
        rest = ~kept & ~tf_one_hot
        n_rest = rest.sum(dim=1, keepdim=True).clamp(min=1)
        return tf_one_hot.float() + self.tf_rest_weight * rest.float() / n_rest

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

    @auto_move_data
    def generative(self, z: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Decode the embedding (masked pretexts); nothing for contrastive pretexts."""
        if not self.has_decoder:
            return {}
        return {"x_hat": self.decode(z, batch_index)}

    # ----------------------------------------------------------------- loss
    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Pretext loss, plus the batch adversary's cross-entropy when it is on."""
        output = self._pretext_loss(tensors, inference_outputs, generative_outputs)
        if not self.batch_adversary_weight:
            return output
        classifier, confusion = self.batch_adversary(
            inference_outputs["z"], tensors[REGISTRY_KEYS.BATCH_KEY]
        )
        classifier, confusion = classifier.mean(), confusion.mean()
        # The classifier's own loss trains only the classifier (detached embedding), so it is
        # added unweighted; the weight sets how hard the encoder works to confuse it.
        return LossOutput(
            loss=output.loss + classifier + self.batch_adversary_weight * confusion,
            reconstruction_loss=output.reconstruction_loss,
            n_obs_minibatch=output.n_obs_minibatch,
            extra_metrics={
                "pretext_loss": output.loss.detach(),
                "batch_classifier_loss": classifier.detach(),
                "batch_confusion_loss": confusion.detach(),
            },
        )

    def _pretext_loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Reconstruction loss on hidden entries, or the contrastive loss of the two views."""
        if self.pretext == "byol":
            per_cell = byol_loss(
                inference_outputs["prediction_1"], inference_outputs["target_2"]
            ) + byol_loss(inference_outputs["prediction_2"], inference_outputs["target_1"])
            return LossOutput(loss=per_cell.mean(), reconstruction_loss=per_cell)
        if self.pretext == "barlow_twins":
            projection_1 = inference_outputs["projection_1"]
            loss = barlow_twins_loss(
                projection_1, inference_outputs["projection_2"], self.bn, self.lambda_offdiag
            )
            return LossOutput(loss=loss, n_obs_minibatch=projection_1.shape[0])
        weight = inference_outputs["loss_weight"]
        error = self._reconstruction_error(inference_outputs, generative_outputs["x_hat"])
        weighted = error * weight
        per_cell = weighted.sum(dim=1) / weight.sum(dim=1).clamp(min=1e-8)
        loss = weighted.sum() / weight.sum().clamp(min=1e-8)
        return LossOutput(loss=loss, reconstruction_loss=per_cell, n_obs_minibatch=weight.shape[0])

    def _reconstruction_error(self, inference_outputs: dict, x_hat: torch.Tensor) -> torch.Tensor:
        """Entry-wise squared error (log1p space) or negative NB log-likelihood (counts)."""
        if self.likelihood == "nb":
            counts = inference_outputs["counts"]
            mean = torch.softmax(x_hat, dim=-1) * counts.sum(dim=1, keepdim=True)
            nb = NegativeBinomial(mu=mean, theta=self.px_r.exp(), validate_args=False)
            return -nb.log_prob(counts)
        target = to_dense(inference_outputs["x_norm"])
        if "target_shift" in inference_outputs:
            target = target - inference_outputs["target_shift"]
        return (x_hat - target).pow(2)

    # ---------------------------------------------------------------- BYOL
    @torch.no_grad()
    def update_target(self, step: int, total_steps: int | None = None) -> float | None:
        """BYOL: move the target network towards the online one; returns the decay used."""
        if self.pretext != "byol":
            return None
        decay = ema_decay(self.ema_decay_base, step, total_steps, self.ema_cosine)
        ema_update(self.target_encoder, self.encoder, decay)
        ema_update(self.target_projector, self.projector, decay)
        return decay

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction of the minibatch (log1p space).

        A masked autoencoder has no latent distribution to sample from; this returns the
        deterministic decoder output for unmasked input.
        """
        return self.reconstruct(tensors[REGISTRY_KEYS.X_KEY], tensors.get(REGISTRY_KEYS.BATCH_KEY))
