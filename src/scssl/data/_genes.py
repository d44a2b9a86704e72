"""Choice of genes: the most variable ones, as scanpy ranks them."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np


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
    fitted again with smoother spans (0.5, then 1.0) instead of failing.
    """
    import scanpy as sc

    if n_top_genes >= adata.n_vars:
        return np.ones(adata.n_vars, dtype=bool)
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
