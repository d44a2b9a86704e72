"""Benchmark task ``reconstruction``: held-out cells in log1p-normalised expression space."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anndata as ad
import numpy as np

from scssl.metrics import mean_squared_error, weighted_explained_variance

from .._baselines import log_normalize
from .._registry import TaskOption, check_methods, progress, register_task
from .._result import BenchmarkResult
from ._training import train_scssl, train_scvi

RECONSTRUCTION_METHOD_NAMES = {
    "scssl": "scssl SSLEncoder (random mask) decoder",
    "pca": "PCA-50 (all genes) projection",
    "scvi": "scVI normalised expression",
}


@register_task(
    "reconstruction",
    methods=tuple(RECONSTRUCTION_METHOD_NAMES),
    options=(TaskOption("held_out", float, "share of cells held out (default 0.1)"),),
)
def reconstruction(
    adata: ad.AnnData,
    batch_key: str | None = None,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    held_out: float = 0.1,
    verbose: bool = True,
    scssl_kwargs: dict | None = None,
    **_,
) -> BenchmarkResult:
    """Reconstruction of held-out cells in ``log1p(normalize_total(1e4))`` space.

    A share ``held_out`` of the cells (fixed seed) is never trained on. Scores: weighted
    explained variance (the study's metric) and MSE between each method's reconstruction and
    the held-out cells' log1p expression. scssl: the masked autoencoder's decoder on unmasked
    input; PCA: 50 components fit on the training cells' log1p expression of all genes; scVI:
    ``get_normalized_expression(library_size=1e4)`` then ``log1p``. The batch, when given, is a
    covariate of scssl's decoder and of scVI.
    """
    methods = check_methods("reconstruction", methods)
    if not 0 < held_out < 1:
        raise ValueError(f"held_out={held_out}; give a share of cells between 0 and 1.")
    rng = np.random.default_rng(seed)
    test = np.zeros(adata.n_obs, dtype=bool)
    test[rng.choice(adata.n_obs, max(1, round(held_out * adata.n_obs)), replace=False)] = True
    train_data, test_data = adata[~test].copy(), adata[test].copy()
    truth = _log1p_dense(test_data)
    rows = []
    for method in methods:
        progress(f"      [{method}] {RECONSTRUCTION_METHOD_NAMES[method]}", verbose)
        start = time.perf_counter()
        predicted = _reconstruct(
            method, train_data, test_data, truth, batch_key, epochs, seed, scssl_kwargs
        )
        seconds = time.perf_counter() - start
        rows.append(
            {
                "method": method,
                "name": RECONSTRUCTION_METHOD_NAMES[method],
                "weighted_explained_variance": weighted_explained_variance(truth, predicted),
                "mse": mean_squared_error(truth, predicted),
                "seconds": round(seconds, 1),
            }
        )
    return BenchmarkResult(
        task="reconstruction",
        dataset="",
        rows=rows,
        metrics=["weighted_explained_variance", "mse"],
        primary="weighted_explained_variance",
        settings={
            "n_cells": adata.n_obs,
            "n_genes": adata.n_vars,
            "n_held_out": int(test.sum()),
            "batch_key": batch_key,
            "epochs": epochs,
            "seed": seed,
        },
        notes=[
            f"{int(test.sum())} held-out cells (seed {seed}), never trained on; "
            "log1p(normalize_total(1e4)) space over all genes."
        ],
    )


def _log1p_dense(adata: ad.AnnData) -> np.ndarray:
    values = log_normalize(adata).X
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


def _reconstruct(method, train_data, test_data, truth, batch_key, epochs, seed, scssl_kwargs):
    """The held-out cells' log1p expression as ``method`` reconstructs it."""
    if method == "scssl":
        model, _ = train_scssl(
            train_data, batch_key, epochs, seed, batch_centering=False, **(scssl_kwargs or {})
        )
        query = test_data.copy()
        if batch_key is not None:
            query.obs[batch_key] = query.obs[batch_key].astype(str)
        return model.get_reconstructed_expression(query, return_numpy=True)
    if method == "pca":
        from sklearn.decomposition import PCA

        train_log = _log1p_dense(train_data)
        n_comps = min(50, train_log.shape[0] - 1, train_log.shape[1] - 1)
        pca = PCA(n_components=n_comps, random_state=seed).fit(train_log)
        return pca.inverse_transform(pca.transform(truth))
    import scvi

    model = train_scvi(train_data, batch_key, epochs, seed)
    scvi.settings.seed = seed
    query = ad.AnnData(X=test_data.X.copy(), obs=test_data.obs.copy(), var=test_data.var[[]])
    normalised = model.get_normalized_expression(query, library_size=1e4, return_numpy=True)
    return np.log1p(normalised)
