"""Benchmark task ``integration``: batch correction and bio conservation, scored by scib-metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .._baselines import (
    epochs_trained,
    highly_variable_genes,
    log_normalize,
    pca_embedding,
    scanvi_model,
)
from .._registry import TaskOption, check_methods, progress, register_task
from .._result import BenchmarkResult
from ._training import train_scssl, train_scvi

#: Weight of the batch adversary of ``scssl_adversarial`` (best of 0.1, 0.3, 1 on Kang).
DEFAULT_BATCH_ADVERSARY_WEIGHT = 0.3
INTEGRATION_METHOD_NAMES = {
    "scssl": "scssl SSLEncoder (batch centring)",
    "scssl_uncentred": "scssl SSLEncoder (no batch centring)",
    "scssl_adversarial": "scssl SSLEncoder (batch adversary, no centring)",
    "pca": "PCA-50 on 2,000 HVGs (no correction)",
    "scvi": "scVI (batch covariate)",
    "scanvi": "scANVI (batch covariate, labels)",
}
_SUMMARY_COLUMNS = {
    "bio_conservation": "Bio conservation",
    "batch_correction": "Batch correction",
    "total": "Total",
}


@register_task(
    "integration",
    methods=tuple(INTEGRATION_METHOD_NAMES),
    requires=("batch_key", "labels_key"),
    options=(
        TaskOption(
            "n_top_genes",
            int,
            "every method on these many batch-aware HVGs (default: all genes)",
        ),
        TaskOption(
            "scssl_epochs",
            int,
            "epochs of scssl alone (baselines keep --epochs or their defaults)",
        ),
        TaskOption(
            "batch_adversary_weight",
            float,
            "batch adversary weight of scssl_adversarial "
            f"(default {DEFAULT_BATCH_ADVERSARY_WEIGHT})",
            scssl_kwarg=True,
        ),
    ),
)
def integration(
    adata: ad.AnnData,
    batch_key: str,
    labels_key: str,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    verbose: bool = True,
    n_jobs: int = 1,
    scssl_kwargs: dict | None = None,
    n_top_genes: int | None = None,
    scssl_epochs: int | None = None,
    **_,
) -> BenchmarkResult:
    """Batch integration scored with scib-metrics' ``Benchmarker``.

    Every method embeds all cells; scib-metrics scores each embedding for bio conservation
    (``labels_key``), batch correction (``batch_key``) and their weighted total (0.6 bio +
    0.4 batch), without min-max scaling across methods (the scores are absolute and comparable
    between runs). The unintegrated reference for the scib PCR comparison is PCA.

    Methods: ``scssl`` (SSLEncoder with batch centring), ``scssl_uncentred``
    (``batch_centering=False``), ``scssl_adversarial`` (no centring, a batch adversary of
    weight ``scssl_kwargs["batch_adversary_weight"]``, default 0.3), ``pca``, ``scvi``,
    ``scanvi`` (all labels given).
    ScVI and scANVI train with early stopping on their validation ELBO when ``epochs`` is
    ``None``, as scssl does. ``scssl_epochs`` caps scssl's epochs alone (default ``epochs``),
    so that the baselines can keep their defaults. With
    ``n_top_genes``, every method sees the same batch-aware highly variable genes (the scib
    benchmark's set-up); otherwise all genes (PCA always uses its 2,000 HVGs).
    """
    _require_scib()
    methods = check_methods("integration", methods)
    adata = _categorical_keys(adata, batch_key, labels_key)
    if n_top_genes is not None and n_top_genes < adata.n_vars:
        keep = highly_variable_genes(log_normalize(adata), n_top_genes, batch_key=batch_key)
        adata = adata[:, keep].copy()
        progress(f"      {adata.n_vars} batch-aware highly variable genes", verbose)
    progress("      computing the unintegrated PCA (scib reference)", verbose)
    adata.obsm["X_pca"] = pca_embedding(adata, seed=seed)
    embeddings, trained_epochs, timings = _embeddings(
        adata,
        methods,
        batch_key,
        labels_key,
        epochs,
        seed,
        verbose,
        scssl_epochs=epochs if scssl_epochs is None else scssl_epochs,
        scssl_kwargs=scssl_kwargs or {},
    )
    for method, embedding in embeddings.items():
        adata.obsm[f"X_{method}"] = np.asarray(embedding, dtype=np.float32)
    table, scib_seconds = _scib_table(adata, methods, batch_key, labels_key, n_jobs, verbose)
    settings = {
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "n_top_genes": n_top_genes,
        "batch_key": batch_key,
        "labels_key": labels_key,
        "n_batches": int(adata.obs[batch_key].nunique()),
        "n_labels": int(adata.obs[labels_key].nunique()),
        "epochs": epochs,
        "scssl_epochs": scssl_epochs,
        "seed": seed,
        "scib_seconds": round(scib_seconds, 1),
        "scssl_kwargs": scssl_kwargs or {},
    }
    return _result(table, methods, trained_epochs, timings, settings)


def _categorical_keys(adata: ad.AnnData, batch_key: str, labels_key: str) -> ad.AnnData:
    """A copy whose batch and label columns are categorical strings (as scib-metrics wants)."""
    adata = adata.copy()
    adata.obs[batch_key] = adata.obs[batch_key].astype(str).astype("category")
    adata.obs[labels_key] = adata.obs[labels_key].astype(str).astype("category")
    return adata


def _embeddings(
    adata, methods, batch_key, labels_key, epochs, seed, verbose, scssl_epochs, scssl_kwargs
):
    """Each method's embedding of all cells, the epochs each trained and its seconds."""
    timings: dict[str, float] = {}
    trained: dict[str, int] = {}
    embeddings: dict[str, np.ndarray] = {}
    scvi = None
    for method in methods:
        progress(f"      [{method}] {INTEGRATION_METHOD_NAMES[method]}", verbose)
        start = time.perf_counter()
        if method.startswith("scssl"):
            kwargs = dict(scssl_kwargs)
            weight = kwargs.pop("batch_adversary_weight", DEFAULT_BATCH_ADVERSARY_WEIGHT)
            if method == "scssl_adversarial":
                kwargs["batch_adversary_weight"] = weight
            model, _ = train_scssl(
                adata, batch_key, scssl_epochs, seed, method == "scssl", **kwargs
            )
            embeddings[method] = model.get_latent_representation()
            trained[method] = epochs_trained(model)
        elif method == "pca":
            embeddings[method] = adata.obsm["X_pca"]
        elif method == "scvi" or (method == "scanvi" and scvi is None):
            scvi = train_scvi(adata, batch_key, epochs, seed)
            trained["scvi"] = epochs_trained(scvi)
            if method == "scvi":
                embeddings[method] = scvi.get_latent_representation()
        if method == "scanvi":
            scanvi = scanvi_model(
                scvi,
                adata.obs[labels_key],
                max_epochs=None if epochs is None else max(1, epochs // 2),
                seed=seed,
                enable_progress_bar=False,
            )
            embeddings[method] = scanvi.get_latent_representation()
            trained[method] = epochs_trained(scanvi)
        timings[method] = time.perf_counter() - start
    return embeddings, trained, timings


def _require_scib() -> None:
    """Fail before any training when scib-metrics is not installed."""
    try:
        import scib_metrics.benchmark  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The integration task needs scib-metrics: pip install 'scssl[benchmark]'."
        ) from error


def _scib_table(adata, methods, batch_key, labels_key, n_jobs, verbose):
    """scib-metrics' table of scores (not min-max scaled) of ``X_<method>``, and its seconds."""
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    progress(
        f"      scib-metrics Benchmarker on {adata.n_obs} cells "
        "(JAX compiles on the first call: about a minute)",
        verbose,
    )
    start = time.perf_counter()
    benchmarker = Benchmarker(
        adata,
        batch_key=batch_key,
        label_key=labels_key,
        embedding_obsm_keys=[f"X_{m}" for m in methods],
        pre_integrated_embedding_obsm_key="X_pca",
        bio_conservation_metrics=BioConservation(),
        batch_correction_metrics=BatchCorrection(),
        n_jobs=n_jobs,
        progress_bar=False,
    )
    benchmarker.benchmark()
    seconds = time.perf_counter() - start
    return benchmarker.get_results(min_max_scale=False), seconds


def _result(table: pd.DataFrame, methods, trained_epochs, timings, settings) -> BenchmarkResult:
    """The scores of scib-metrics' results table as a BenchmarkResult."""
    metric_type = table.loc["Metric Type"]
    scores = table.drop(index="Metric Type").astype(float)
    rows = []
    for method in methods:
        values = scores.loc[f"X_{method}"]
        rows.append(
            {
                "method": method,
                "name": INTEGRATION_METHOD_NAMES[method],
                **{key: float(values[column]) for key, column in _SUMMARY_COLUMNS.items()},
                "epochs": trained_epochs.get(method),
                "seconds": round(timings[method], 1),
            }
        )
    per_metric = {
        method: {
            column: float(scores.loc[f"X_{method}", column])
            for column in scores.columns
            if column not in _SUMMARY_COLUMNS.values()
        }
        for method in methods
    }
    return BenchmarkResult(
        task="integration",
        dataset="",
        rows=rows,
        metrics=["total", "bio_conservation", "batch_correction"],
        primary="total",
        settings=settings,
        notes=[
            "scib-metrics Benchmarker with its default metrics, scores not min-max scaled; "
            "total = 0.6 x bio conservation + 0.4 x batch correction.",
            "Seconds are wall-clock on the machine that ran the benchmark (training + embedding); "
            "epochs are those trained (early stopping ends training before the maximum).",
        ],
        details={
            "per_metric": per_metric,
            "metric_type": {k: str(v) for k, v in metric_type.items()},
            "embeddings_obsm": {m: f"X_{m}" for m in methods},
        },
    )
