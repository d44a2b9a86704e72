"""Helpers for ``torch.sparse_csr`` minibatches."""

from __future__ import annotations

import torch


def csr_row_ids(x: torch.Tensor) -> torch.Tensor:
    """Row index of every stored value of a CSR tensor."""
    crow = x.crow_indices()
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), counts)


def csr_with_values(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A CSR tensor with the sparsity pattern of ``x`` and new ``values``."""
    return torch.sparse_csr_tensor(
        x.crow_indices(), x.col_indices(), values, size=x.shape, device=x.device
    )


def to_dense(x: torch.Tensor) -> torch.Tensor:
    """Dense copy of a sparse minibatch (decoder targets only, one minibatch at a time)."""
    return x.to_dense() if x.layout != torch.strided else x
