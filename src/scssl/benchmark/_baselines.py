"""The methods users would pick instead of scssl, run the standard way."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
from sklearn.linear_model import LogisticRegression


def log_normalize(adata: ad.AnnData, layer: str | None = None) -> ad.AnnData:
    """A copy with ``normalize_total(1e4)`` + ``log1p`` in ``.X`` (counts kept in ``layers``)."""
    out = ad.AnnData(
        X=(adata.X if layer is None else adata.layers[layer]).copy(),
        obs=adata.obs.copy(),
        var=adata.var[[]].copy(),
    )
    out.layers["counts"] = out.X.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def highly_variable_genes(
    adata: ad.AnnData, n_top_genes: int = 2000, batch_key: str | None = None
) -> np.ndarray:
    """Mask of the ``n_top_genes`` most variable genes (scanpy's ``seurat`` flavour on log data).

    With ``batch_key``, genes are ranked by how many batches find them variable (scanpy's
    batch-aware selection).
    """
    hvg = sc.pp.highly_variable_genes(
        adata, n_top_genes=n_top_genes, batch_key=batch_key, inplace=False
    )
    if batch_key is not None:
        hvg = hvg.reindex(adata.var_names)
    return hvg["highly_variable"].to_numpy(dtype=bool)


def pca_embedding(
    adata: ad.AnnData, n_comps: int = 50, n_top_genes: int = 2000, seed: int = 0
) -> np.ndarray:
    """PCA on scaled log-normalised highly variable genes, the scanpy tutorial pipeline."""
    lognorm = log_normalize(adata)
    lognorm = lognorm[:, highly_variable_genes(lognorm, n_top_genes)].copy()
    sc.pp.scale(lognorm, max_value=10)
    sc.pp.pca(lognorm, n_comps=n_comps, random_state=seed)
    return lognorm.obsm["X_pca"]


def scvi_embedding(
    adata: ad.AnnData, max_epochs: int | None = None, batch_key: str | None = None, seed: int = 0
):
    """ScVI's latent space with its default settings; returns ``(embedding, model)``."""
    import scvi

    scvi.settings.seed = seed
    data = ad.AnnData(X=adata.X.copy(), obs=adata.obs.copy(), var=adata.var[[]].copy())
    scvi.model.SCVI.setup_anndata(data, batch_key=batch_key)
    model = scvi.model.SCVI(data)
    model.train(max_epochs=max_epochs)
    return model.get_latent_representation(), model


def logistic_regression_transfer(
    reference: ad.AnnData, labels, query: ad.AnnData, n_top_genes: int = 2000, seed: int = 0
) -> np.ndarray:
    """Logistic regression on log-normalised reference HVGs (CellTypist-like), applied to query."""
    ref = log_normalize(reference)
    genes = ref.var_names[highly_variable_genes(ref, n_top_genes)]
    qry = log_normalize(query)
    classifier = LogisticRegression(max_iter=1000, random_state=seed)
    classifier.fit(ref[:, genes].X, np.asarray(labels).astype(str))
    return classifier.predict(qry[:, genes].X)
