"""Masking strategies for masked-autoencoder pretraining."""

from __future__ import annotations

import torch
from torch import nn

from ._sparse import csr_row_ids, csr_with_values


class RandomMask(nn.Module):
    """Mask each gene of each cell independently with probability ``rate``.

    Kept inputs are scaled by ``1 / (1 - rate)`` (as inverted dropout), masked inputs are set to
    zero. Works on dense and ``torch.sparse_csr`` input; the returned mask is dense (``True`` =
    masked) because the reconstruction loss covers masked zeros too.
    """

    def __init__(self, rate: float = 0.5):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"mask rate must be in (0, 1), got {rate}.")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input, mask)``."""
        mask = torch.rand(x.shape, device=x.device) < self.rate
        keep_scale = 1.0 / (1.0 - self.rate)
        if x.layout == torch.sparse_csr:
            kept = ~mask[csr_row_ids(x), x.col_indices()]
            return csr_with_values(x, x.values() * kept * keep_scale), mask
        return x * (~mask) * keep_scale, mask
