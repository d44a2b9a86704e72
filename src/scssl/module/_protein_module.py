"""The torch module behind :class:`scssl.model.SSLProteinPredictor`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch import nn

from scssl.nn import ACTIVATIONS, DEFAULT_N_HIDDEN, DEFAULT_N_LATENT, mlp
from scssl.nn._sparse import to_dense

from ._base import EncoderModule


class SSLProteinModule(EncoderModule):
    """RNA encoder (the SSL encoder's MLP) with a head that predicts ``log1p`` protein counts.

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_proteins
        Number of proteins predicted.
    n_batch
        Number of batches; with more than one, the head receives a one-hot batch covariate.
    n_labels, n_continuous_cov, n_cats_per_cov
        Accepted for scvi-tools' datamodule path; unused.
    n_latent
        Embedding size of the encoder.
    n_hidden
        Hidden layer sizes of the encoder.
    n_hidden_head
        Hidden layer sizes of the head; ``()`` gives a linear head on the activated embedding.
    dropout_rate
        Dropout after every hidden activation of the encoder.
    head_dropout_rate
        Dropout in the head.
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    log_normalized
        The RNA input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.
    freeze_encoder
        Keep the encoder fixed (no gradient, eval mode); only the head trains.
    protein_batch_mask
        ``(max(n_batch, 1), n_proteins)``: 1 where a protein was measured in a batch, 0 where it
        is missing there (totalVI's convention: all zeros in a batch means not measured). Missing
        entries do not enter the loss.
    protein_mean
        Mean ``log1p`` protein count per protein, used to initialise the last bias.

    """

    def __init__(
        self,
        n_input: int,
        n_proteins: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        *,
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        n_hidden_head: Sequence[int] = (256,),
        dropout_rate: float = 0.1,
        head_dropout_rate: float = 0.1,
        activation: str = "selu",
        log_normalized: bool = False,
        freeze_encoder: bool = False,
        protein_batch_mask: np.ndarray | None = None,
        protein_mean: np.ndarray | None = None,
    ):
        super().__init__(
            n_input, n_batch, n_latent, n_hidden, dropout_rate, activation, log_normalized
        )
        self.n_proteins = n_proteins
        self.freeze_encoder = freeze_encoder
        # The encoder's last layer has no activation (as in the study); the head starts with one.
        self.head_activation = nn.Sequential(
            ACTIVATIONS[activation](), nn.Dropout(head_dropout_rate)
        )
        self.head = mlp(
            n_latent + self.n_batch_covariate,
            n_hidden_head,
            n_proteins,
            activation=activation,
            dropout_rate=head_dropout_rate,
        )
        mask = (
            np.ones((max(n_batch, 1), n_proteins), dtype=np.float32)
            if protein_batch_mask is None
            else np.asarray(protein_batch_mask, dtype=np.float32)
        )
        expected = (max(n_batch, 1), n_proteins)
        if mask.shape != expected:
            raise ValueError(f"protein_batch_mask has shape {mask.shape}, expected {expected}.")
        self.register_buffer("protein_batch_mask", torch.from_numpy(mask))
        if protein_mean is not None:
            with torch.no_grad():
                self.head[-1].bias.copy_(torch.as_tensor(protein_mean, dtype=torch.float32))
        self.set_encoder_frozen(freeze_encoder)

    # ------------------------------------------------------------ freezing
    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the encoder: no gradient and eval mode (no dropout) when frozen."""
        self.freeze_encoder = frozen
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            self.encoder.eval()

    def train(self, mode: bool = True):
        """As :meth:`torch.nn.Module.train`, keeping a frozen encoder in eval mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    # ------------------------------------------------------------ forward
    def predict_from_embedding(
        self, z: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log1p`` protein counts from the embedding (and batch, when the head uses it)."""
        h = self.head_activation(z)
        if self.n_batch_covariate:
            if batch_index is None:
                raise ValueError("This model's head needs the batch of each cell.")
            one_hot = F.one_hot(batch_index.view(-1).long(), self.n_batch_covariate).to(h.dtype)
            h = torch.cat([h, one_hot], dim=-1)
        return self.head(h)

    @auto_move_data
    def predict(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> torch.Tensor:
        """``log1p`` protein counts predicted from RNA counts."""
        return self.predict_from_embedding(self.embed(x), batch_index)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        return {"z": inference_outputs["z"], "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY)}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalise and encode a minibatch of RNA counts."""
        return {"z": self.embed(x)}

    @auto_move_data
    def generative(self, z: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Head output: ``log1p`` protein counts."""
        return {"protein_log1p": self.predict_from_embedding(z, batch_index)}

    def observed_mask(self, batch_index: torch.Tensor | None, n_cells: int) -> torch.Tensor:
        """``(n_cells, n_proteins)``: 1 where the cell's batch measured the protein."""
        if batch_index is None:
            return self.protein_batch_mask[0].expand(n_cells, -1)
        return self.protein_batch_mask[batch_index.view(-1).long()]

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Mean squared error on ``log1p`` protein counts, over the measured proteins only."""
        target = torch.log1p(to_dense(tensors[REGISTRY_KEYS.PROTEIN_EXP_KEY]).float())
        prediction = generative_outputs["protein_log1p"]
        mask = self.observed_mask(tensors.get(REGISTRY_KEYS.BATCH_KEY), target.shape[0])
        squared_error = (prediction - target).pow(2) * mask
        n_observed = mask.sum(dim=1)
        loss = squared_error.sum() / n_observed.sum().clamp(min=1.0)
        per_cell = squared_error.sum(dim=1) / n_observed.clamp(min=1.0)
        return LossOutput(loss=loss, reconstruction_loss=per_cell, n_obs_minibatch=target.shape[0])

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ``log1p`` protein counts (the model is deterministic: no sampling)."""
        return self.predict(tensors[REGISTRY_KEYS.X_KEY], tensors.get(REGISTRY_KEYS.BATCH_KEY))
