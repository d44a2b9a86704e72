"""Multilayer perceptrons of the study, with a first layer that consumes sparse minibatches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"selu": nn.SELU, "relu": nn.ReLU, "gelu": nn.GELU}
#: The study's encoder: 512-512-256-256 hidden units, a 64-d embedding.
DEFAULT_N_HIDDEN = (512, 512, 256, 256)
DEFAULT_N_LATENT = 64


class SparseInputLinear(nn.Module):
    """Linear layer for dense or ``torch.sparse_csr`` input.

    The weight is stored as ``(in_features, out_features)``, the transpose of
    :class:`torch.nn.Linear`, so that a sparse row times the weight is a weighted gather of
    weight rows (:func:`torch.nn.functional.embedding_bag`): forward and backward cost grows with
    the non-zeros of the minibatch, not with the number of genes.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as :class:`torch.nn.Linear` does (Kaiming uniform, fan-in bias)."""
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense output of shape ``(n_cells, out_features)``."""
        if x.layout == torch.sparse_csr:
            out = F.embedding_bag(
                x.col_indices(),
                self.weight,
                x.crow_indices()[:-1],
                mode="sum",
                per_sample_weights=x.values(),
                include_last_offset=False,
            )
            return out + self.bias
        return torch.addmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sparse input"


def _block(layer: nn.Module, activation: str, dropout_rate: float) -> list[nn.Module]:
    return [layer, ACTIVATIONS[activation](), nn.Dropout(dropout_rate)]


def mlp(
    n_input: int,
    hidden: Sequence[int],
    n_output: int,
    *,
    activation: str = "selu",
    dropout_rate: float = 0.1,
    sparse_input: bool = False,
) -> nn.Sequential:
    """``Linear -> activation -> Dropout`` blocks, then a last ``Linear`` without activation.

    The layout (a linear layer every three modules) matches the study's checkpoints, whose
    encoder keys are ``encoder.{0,3,6,9,12}``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}; choose one of {sorted(ACTIVATIONS)}.")
    sizes = [n_input, *hidden]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        first = (
            SparseInputLinear(n_in, n_out) if (i == 0 and sparse_input) else nn.Linear(n_in, n_out)
        )
        layers += _block(first, activation, dropout_rate)
    last_in = sizes[-1]
    if not layers and sparse_input:
        layers.append(SparseInputLinear(last_in, n_output))
    else:
        layers.append(nn.Linear(last_in, n_output))
    return nn.Sequential(*layers)
