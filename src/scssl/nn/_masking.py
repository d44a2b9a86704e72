"""Masking strategies for masked-autoencoder pretraining."""

from __future__ import annotations

import torch
from torch import nn

from ._sparse import column_positions, csr_row_ids, csr_with_values, is_csr


class RandomMask(nn.Module):
    """Mask each gene of each cell independently with probability ``rate``.

    Kept inputs are scaled by ``1 / (1 - rate)`` (as inverted dropout), masked inputs are set to
    zero. Works on dense and ``torch.sparse_csr`` input. The returned mask (``True`` = masked)
    is dense because the reconstruction loss covers masked zeros too; with ``columns`` it holds
    only those genes (a sample the loss is computed on), while the input's other non-zero
    entries are masked with draws of their own: the masking of the input is the same in law.
    """

    def __init__(self, rate: float = 0.5):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"mask rate must be in (0, 1), got {rate}.")
        self.rate = rate

    def forward(
        self, x: torch.Tensor, columns: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input, mask)``; ``mask`` is ``(n_cells, len(columns) or n_genes)``."""
        n_columns = x.shape[1] if columns is None else len(columns)
        mask = torch.rand(x.shape[0], n_columns, device=x.device) < self.rate
        keep_scale = 1.0 / (1.0 - self.rate)
        if not is_csr(x):
            full = (
                mask if columns is None else _scatter_columns(mask, columns, x.shape[1], self.rate)
            )
            return x * (~full) * keep_scale, mask
        rows, cols = csr_row_ids(x), x.col_indices()
        if columns is None:
            masked = mask[rows, cols]
        else:
            positions = column_positions(columns, x.shape[1])[cols]
            fresh = torch.rand(len(cols), device=x.device) < self.rate
            sampled = mask[rows, positions.clamp(min=0)]
            masked = torch.where(positions >= 0, sampled, fresh)
        return csr_with_values(x, x.values() * ~masked * keep_scale), mask


def _scatter_columns(
    mask: torch.Tensor, columns: torch.Tensor, n_genes: int, rate: float
) -> torch.Tensor:
    """A full ``(n_cells, n_genes)`` mask holding ``mask`` at ``columns``, fresh draws elsewhere."""
    full = torch.rand(mask.shape[0], n_genes, device=mask.device) < rate
    full[:, columns] = mask
    return full


def _apply_keep(x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Zero the entries where ``keep`` is False and multiply the rest by the scalar ``scale``.

    ``keep`` is ``(n_genes,)`` (one mask for the minibatch) or ``(n_cells, n_genes)``.
    """
    if is_csr(x):
        rows, cols = csr_row_ids(x), x.col_indices()
        kept = keep[cols] if keep.dim() == 1 else keep[rows, cols]
        return csr_with_values(x, x.values() * kept * scale)
    return x * keep * scale


class GeneProgrammeMask(nn.Module):
    """Mask whole gene programmes: ``int(n_programmes * rate)`` programmes per minibatch.

    All genes of the chosen programmes are zeroed in every cell of the minibatch (as the study
    does); kept inputs are scaled by ``1 / (1 - share of genes masked)``.

    Parameters
    ----------
    members
        Boolean ``(n_programmes, n_genes)`` membership matrix.
    rate
        Share of programmes masked per minibatch; at least one programme is masked.

    """

    def __init__(self, members: torch.Tensor, rate: float = 0.25):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"mask rate must be in (0, 1), got {rate}.")
        self.rate = rate
        # Derived from the gene sets and vocabulary saved with the model: not part of the weights.
        self.register_buffer(
            "members", torch.as_tensor(members, dtype=torch.bool), persistent=False
        )
        self.n_masked_programmes = max(1, int(self.members.shape[0] * rate))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input, mask)``; ``mask`` is ``(n_cells, n_genes)``, True = masked."""
        chosen = torch.randperm(self.members.shape[0], device=x.device)[: self.n_masked_programmes]
        gene_masked = self.members[chosen].any(dim=0)
        share = gene_masked.float().mean()
        keep_scale = 1.0 / (1.0 - share).clamp(min=1e-6)
        masked_input = _apply_keep(x, ~gene_masked, keep_scale)
        return masked_input, gene_masked.expand(x.shape[0], -1)


class ProgrammeToTFMask(nn.Module):
    """Keep only the targets of one TF programme per cell; the TF itself is to be predicted.

    For each cell a TF programme is drawn uniformly; the input keeps that programme's target
    genes (no rescaling: the kept share differs by orders of magnitude between TFs) and the TF's
    own expression is hidden.

    Parameters
    ----------
    members
        Boolean ``(n_tfs, n_genes)``: targets of each TF.
    tf_index
        ``(n_tfs,)`` vocabulary index of each TF.

    """

    def __init__(self, members: torch.Tensor, tf_index: torch.Tensor):
        super().__init__()
        self.register_buffer(
            "members", torch.as_tensor(members, dtype=torch.bool), persistent=False
        )
        self.register_buffer(
            "tf_index", torch.as_tensor(tf_index, dtype=torch.long), persistent=False
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(masked_input, kept, tf)``.

        ``kept``: genes shown to each cell ``(n_cells, n_genes)``; ``tf``: each cell's TF index.
        """
        programme = torch.randint(self.members.shape[0], (x.shape[0],), device=x.device)
        kept = self.members[programme]
        return _apply_keep(x, kept, 1.0), kept, self.tf_index[programme]
