"""Per-minibatch normalisation as in the study: ``normalize_total(1e4)`` then ``log1p``.

Works on dense tensors and on ``torch.sparse_csr`` tensors without densifying them.
"""

from __future__ import annotations

import torch

from scssl.nn._sparse import csr_row_sums, csr_with_values, per_value

TARGET_SUM = 1e4


def normalize_log1p(x: torch.Tensor, target_sum: float = TARGET_SUM) -> torch.Tensor:
    """Scale each cell to ``target_sum`` counts and apply ``log1p``; all-zero cells stay zero."""
    if x.layout == torch.sparse_csr:
        scale = per_value(x, _scale(csr_row_sums(x), target_sum))
        return csr_with_values(x, torch.log1p(x.values() * scale))
    return torch.log1p(x * _scale(x.sum(dim=1, keepdim=True), target_sum))


def _scale(library: torch.Tensor, target_sum: float) -> torch.Tensor:
    # Empty cells get a zero factor instead of an overflowing one (0 * inf would be NaN).
    safe = torch.where(library > 0, library, torch.ones_like(library))
    return torch.where(library > 0, target_sum / safe, torch.zeros_like(library))
