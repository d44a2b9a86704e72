"""What the three scssl modules share: the study's MLP encoder on normalised counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.module.base import BaseModuleClass, auto_move_data

from scssl.data._normalize import normalize_log1p
from scssl.nn import ACTIVATIONS, DEFAULT_N_HIDDEN, DEFAULT_N_LATENT, mlp
from scssl.nn._sparse import as_csr


class EncoderModule(BaseModuleClass):
    """A module whose cells pass through the study's MLP encoder.

    Counts are normalised on the fly (``normalize_total(1e4)`` then ``log1p``) unless the data
    are already log-normalised; the first layer consumes sparse minibatches.

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_batch
        Number of batches; with more than one, they are a covariate (``n_batch_covariate``).
    n_latent, n_hidden, dropout_rate, activation
        Encoder architecture: hidden sizes, embedding size, dropout after each hidden
        activation, and ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    log_normalized
        The input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.

    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float = 0.1,
        activation: str = "selu",
        log_normalized: bool = False,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}; choose one of {sorted(ACTIVATIONS)}.")
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_batch_covariate = n_batch if n_batch > 1 else 0
        self.n_latent = n_latent
        self.log_normalized = log_normalized
        #: The encoder's constructor options; a fine-tuned copy is built from them.
        self.architecture = {
            "n_hidden": tuple(n_hidden),
            "n_latent": n_latent,
            "activation": activation,
            "dropout_rate": float(dropout_rate),
        }
        self.encoder = mlp(
            n_input,
            n_hidden,
            n_latent,
            activation=activation,
            dropout_rate=dropout_rate,
            sparse_input=True,
        )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Counts -> ``log1p(normalize_total(1e4))``; identity for log-normalised input.

        Minibatches of a CSC matrix become CSR here, one minibatch at a time.
        """
        x = as_csr(x)
        return x if self.log_normalized else normalize_log1p(x)

    @auto_move_data
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of unmasked cells (call in eval mode for deterministic output)."""
        return self.encoder(self.normalize(x))
