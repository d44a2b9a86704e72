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
    kept.
    """
    import scanpy as sc

    if n_top_genes >= adata.n_vars:
        return np.ones(adata.n_vars, dtype=bool)
    table = sc.pp.highly_variable_genes(
        adata,
        n_top_genes=n_top_genes,
        batch_key=batch_key,
        layer=layer,
        flavor=flavor,
        inplace=False,
    )
    if batch_key is not None:
        table = table.reindex(adata.var_names)
    return table["highly_variable"].to_numpy(dtype=bool)
