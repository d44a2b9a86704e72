"""The torch module behind :class:`scssl.model.SSLEncoder`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from scssl.data._normalize import normalize_log1p
from scssl.nn import RandomMask, mlp
from scssl.nn._sparse import to_dense

PRETEXTS = ("random_mask",)


class SSLModule(BaseModuleClass):
    """MLP encoder (and decoder) pretrained with a self-supervised pretext task.

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_batch
        Number of batches; with more than one, the decoder receives a one-hot batch covariate.
    n_labels, n_continuous_cov, n_cats_per_cov
        Accepted for scvi-tools' datamodule path; unused.
    pretext
        Self-supervised task. ``"random_mask"``: masked autoencoding with Bernoulli masks.
    n_latent
        Embedding size.
    n_hidden
        Hidden layer sizes of the encoder; the decoder mirrors them.
    dropout_rate
        Dropout after every hidden activation.
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    mask_rate
        Share of genes masked per cell (``random_mask``).
    log_normalized
        The input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.

    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        *,
        pretext: str = "random_mask",
        n_latent: int = 64,
        n_hidden: Sequence[int] = (512, 512, 256, 256),
        dropout_rate: float = 0.1,
        activation: str = "selu",
        mask_rate: float = 0.5,
        log_normalized: bool = False,
    ):
        super().__init__()
        if pretext not in PRETEXTS:
            raise ValueError(f"pretext={pretext!r} is not known; choose one of {list(PRETEXTS)}.")
        self.pretext = pretext
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_latent = n_latent
        self.log_normalized = log_normalized
        self.encoder = mlp(
            n_input,
            n_hidden,
            n_latent,
            activation=activation,
            dropout_rate=dropout_rate,
            sparse_input=True,
        )
        self.n_batch_covariate = n_batch if n_batch > 1 else 0
        self.decoder = mlp(
            n_latent + self.n_batch_covariate,
            list(reversed(n_hidden)),
            n_input,
            activation=activation,
            dropout_rate=dropout_rate,
        )
        self.masking = RandomMask(mask_rate)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Counts -> ``log1p(normalize_total(1e4))``; identity for log-normalised input."""
        return x if self.log_normalized else normalize_log1p(x)

    @auto_move_data
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of unmasked cells (call in eval mode for deterministic output)."""
        return self.encoder(self.normalize(x))

    @auto_move_data
    def reconstruct(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output (log1p space) for unmasked cells."""
        return self.decode(self.embed(x), batch_index)

    def decode(self, z: torch.Tensor, batch_index: torch.Tensor | None) -> torch.Tensor:
        """Decoder output, with the one-hot batch covariate when there are several batches."""
        if self.n_batch_covariate:
            one_hot = F.one_hot(batch_index.view(-1).long(), self.n_batch_covariate).to(z.dtype)
            z = torch.cat([z, one_hot], dim=-1)
        return self.decoder(z)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        return {"z": inference_outputs["z"], "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY)}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalise, mask and encode a minibatch."""
        x_norm = self.normalize(x)
        masked_input, mask = self.masking(x_norm)
        return {"z": self.encoder(masked_input), "x_norm": x_norm, "mask": mask}

    @auto_move_data
    def generative(self, z: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Decode the embedding back to log1p expression."""
        return {"x_hat": self.decode(z, batch_index)}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Mean squared error on the masked entries only."""
        target = to_dense(inference_outputs["x_norm"])
        mask = inference_outputs["mask"].to(target.dtype)
        squared_error = (generative_outputs["x_hat"] - target).pow(2) * mask
        n_masked_per_cell = mask.sum(dim=1)
        loss = squared_error.sum() / n_masked_per_cell.sum().clamp(min=1.0)
        per_cell = squared_error.sum(dim=1) / n_masked_per_cell.clamp(min=1.0)
        return LossOutput(loss=loss, reconstruction_loss=per_cell, n_obs_minibatch=target.shape[0])

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction of the minibatch (log1p space).

        A masked autoencoder has no latent distribution to sample from; this returns the
        deterministic decoder output for unmasked input.
        """
        return self.reconstruct(tensors[REGISTRY_KEYS.X_KEY], tensors.get(REGISTRY_KEYS.BATCH_KEY))
