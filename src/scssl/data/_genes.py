"""Choice of genes: the most variable ones, as scanpy ranks them."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np

from ._warnings import warn_user

#: Batches with fewer cells are left out of the batch-aware ranking: scikit-misc's loess, which
#: ``seurat_v3`` fits per batch, crashes the Python process on a batch of one cell.
MIN_BATCH_CELLS = 2


def highly_variable_genes(
    adata: ad.AnnData,
    n_top_genes: int = 2000,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
    flavor: Literal["seurat_v3", "seurat"] = "seurat_v3",
) -> np.ndarray:
    """Mask of the ``n_top_genes`` most variable genes; ``adata`` is not modified.

    ``"seurat_v3"`` ranks raw counts (``.X`` or ``layer``); ``"seurat"`` ranks log-normalised
    values (the scanpy tutorial). With ``batch_key``, genes variable in more batches rank first
    (scanpy's batch-aware selection). With ``n_top_genes`` at least the number of genes, all are
    kept. ``"seurat_v3"`` fits a loess of variance on mean with scanpy's span (0.3); where that
    fit is singular or nearly so (small batches with many near-silent genes, few genes) it is
    fitted again with smoother spans (0.5, then 1.0) instead of failing. Batches of fewer than
    ``MIN_BATCH_CELLS`` cells are left out of the ranking (with a warning).
    """
    import scanpy as sc

    if n_top_genes >= adata.n_vars:
        return np.ones(adata.n_vars, dtype=bool)
    if batch_key is not None:
        adata, batch_key = _without_tiny_batches(adata, batch_key)
    options = {"n_top_genes": n_top_genes, "batch_key": batch_key, "layer": layer}
    spans = (0.3, 0.5, 1.0) if flavor == "seurat_v3" else (None,)
    for attempt, span in enumerate(spans, start=1):
        extra = {} if span is None else {"span": span}
        try:
            table = sc.pp.highly_variable_genes(
                adata, flavor=flavor, inplace=False, **options, **extra
            )
            break
        except ValueError as error:
            # skmisc's loess says "reciprocal condition number" or "near singularities"
            singular = any(s in str(error) for s in ("condition number", "singularit"))
            if not singular or attempt == len(spans):
                raise
    if batch_key is not None:
        table = table.reindex(adata.var_names)
    return table["highly_variable"].to_numpy(dtype=bool)


def _without_tiny_batches(adata: ad.AnnData, batch_key: str) -> tuple[ad.AnnData, str | None]:
    """The cells of batches with at least ``MIN_BATCH_CELLS`` cells, and the batch key.

    When no batch has that many: all cells, ranked without batches.
    """
    sizes = adata.obs[batch_key].value_counts()
    sizes = sizes[sizes > 0]  # a categorical column lists its unused categories too
    tiny = sizes.index[sizes < MIN_BATCH_CELLS]
    if len(tiny) == 0:
        return adata, batch_key
    names = ", ".join(repr(str(b)) for b in tiny[:5]) + (", ..." if len(tiny) > 5 else "")
    warn_user(
        f"{len(tiny)} batches ({names}) have fewer than {MIN_BATCH_CELLS} cells; the most "
        "variable genes are ranked on the other batches' cells (batch-aware ranking fits each "
        "batch on its own)."
    )
    if len(tiny) == len(sizes):
        return adata, None
    return adata[~adata.obs[batch_key].isin(tiny).to_numpy()], batch_key
