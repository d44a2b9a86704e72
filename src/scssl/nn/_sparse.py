"""Helpers for ``torch.sparse_csr`` minibatches."""

from __future__ import annotations

import warnings

import torch


def _consume_torch_sparse_notices() -> None:
    """Let torch give its once-per-process notices about CSR tensors here, unseen.

    The first CSR tensor of a process (scssl's or scvi-tools' loader's) makes torch warn that
    CSR support is in beta and that invariant checks are off: notes about torch that a user of
    scssl cannot act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crow, col, value = torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1)
        torch.sparse_csr_tensor(crow, col, value, (1, 1), device="cpu")


_consume_torch_sparse_notices()


def is_csr(x: torch.Tensor) -> bool:
    """Whether ``x`` is a ``torch.sparse_csr`` tensor."""
    return x.layout == torch.sparse_csr


def as_csr(x: torch.Tensor) -> torch.Tensor:
    """A compressed-sparse-column minibatch (from a CSC matrix) as CSR; others unchanged."""
    return x.to_sparse_csr() if x.layout == torch.sparse_csc else x


def csr_row_ids(x: torch.Tensor) -> torch.Tensor:
    """Row index of every stored value of a CSR tensor."""
    return per_value(x, torch.arange(x.shape[0], device=x.device))


def csr_row_sums(x: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of each row's stored values (or of ``values`` in their places) of a CSR tensor.

    A segment sum over ``crow_indices``: about 5x faster on CPU than scattering by row id.
    """
    values = x.values() if values is None else values
    if not values.is_floating_point():  # segment_reduce has no integer kernels
        values = values.float()
    return torch.segment_reduce(values, "sum", offsets=x.crow_indices())


def per_value(x: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """``per_row`` (one value per row of CSR ``x``) repeated for each stored value of its row."""
    crow = x.crow_indices()
    n_values = x.values().numel()  # known length: no device synchronisation on GPUs
    return torch.repeat_interleave(per_row, crow[1:] - crow[:-1], output_size=n_values)


def csr_with_values(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A CSR tensor with the sparsity pattern of ``x`` and new ``values``."""
    return torch.sparse_csr_tensor(
        x.crow_indices(), x.col_indices(), values, size=x.shape, device=x.device
    )


def to_dense(x: torch.Tensor) -> torch.Tensor:
    """Dense copy of a sparse minibatch (decoder targets only, one minibatch at a time)."""
    return x.to_dense() if x.layout != torch.strided else x


def column_positions(columns: torch.Tensor, n_columns: int, missing: int = -1) -> torch.Tensor:
    """For each of ``n_columns`` columns, its position in ``columns`` (``missing`` if absent)."""
    positions = torch.full((n_columns,), missing, dtype=torch.long, device=columns.device)
    positions[columns] = torch.arange(len(columns), device=columns.device)
    return positions


def dense_columns(x: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
    """``x[:, columns]`` dense (all columns for ``None``), without densifying all of ``x``."""
    if columns is None:
        return to_dense(x)
    if not is_csr(x):
        return x[:, columns]
    # values of columns outside the sample land in one extra column, dropped afterwards
    positions = column_positions(columns, x.shape[1], missing=len(columns))[x.col_indices()]
    out = torch.zeros(x.shape[0], len(columns) + 1, dtype=x.dtype, device=x.device)
    out[csr_row_ids(x), positions] = x.values()
    return out[:, :-1]


def rows(x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
    """Rows ``start:stop`` of a dense or CSR minibatch (CSR stays CSR)."""
    stop = x.shape[0] if stop is None else stop
    if not is_csr(x):
        return x[start:stop]
    crow = x.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(
        crow[start : stop + 1] - first,
        x.col_indices()[first:last],
        x.values()[first:last],
        size=(stop - start, x.shape[1]),
        device=x.device,
    )
