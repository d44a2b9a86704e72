"""Minibatches of cells for inference, straight from the matrix (dense, sparse or backed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch


def to_torch(block) -> torch.Tensor:
    """A scipy CSR block -> ``torch.sparse_csr`` float32; a dense block -> dense float32."""
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        return torch.sparse_csr_tensor(
            torch.from_numpy(block.indptr.astype(np.int64)),
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.data.astype(np.float32, copy=False)),
            size=block.shape,
        )
    return torch.from_numpy(np.asarray(block, dtype=np.float32))


def iterate_minibatches(
    matrix, indices: np.ndarray | None = None, batch_size: int = 1024
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(cell_indices, tensor)`` minibatches in the order of ``indices``.

    Sparse matrices stay sparse; only one minibatch is in memory at a time, so a backed AnnData
    (``read_h5ad(path, backed="r")``) is read from disk piece by piece.
    """
    n_obs = matrix.shape[0]
    indices = np.arange(n_obs) if indices is None else np.asarray(indices)
    if indices.dtype == bool:
        indices = np.flatnonzero(indices)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        if len(chunk) and chunk[-1] - chunk[0] == len(chunk) - 1 and np.all(np.diff(chunk) == 1):
            # Consecutive rows: one slice, a single sequential read for backed data.
            yield chunk, to_torch(matrix[int(chunk[0]) : int(chunk[-1]) + 1])
            continue
        # Backed datasets need increasing indices; restore the requested order afterwards.
        order = np.argsort(chunk, kind="stable")
        block = matrix[chunk[order]]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        block = block[inverse]
        yield chunk, to_torch(block)
