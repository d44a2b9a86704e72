"""Benchmark task ``label_transfer``: reference -> query annotation, macro F1 and accuracy."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anndata as ad
import numpy as np

from scssl.metrics import accuracy, macro_f1

from .._baselines import logistic_regression_transfer, pca_embedding, scanvi_model
from .._knn import knn_transfer
from .._registry import TaskOption, check_methods, progress, register_task
from .._result import BenchmarkResult
from ._training import train_scssl, train_scvi

LABEL_TRANSFER_METHOD_NAMES = {
    "scssl": "scssl SSLEncoder + kNN (k=5)",
    "pca": "PCA-50 on 2,000 HVGs + kNN (k=5)",
    "pca_cosine": "PCA-50 on 2,000 HVGs + kNN (k=5, cosine)",
    "scvi": "scVI + kNN (k=5)",
    "scanvi": "scANVI (query labels hidden)",
    "logreg": "logistic regression, 2,000 HVGs",
}
#: The kNN methods: the embedding each votes in and its distance.
KNN_METHODS = {
    "scssl": ("scssl", "euclidean"),
    "pca": ("pca", "euclidean"),
    "pca_cosine": ("pca", "cosine"),
    "scvi": ("scvi", "euclidean"),
}


@register_task(
    "label_transfer",
    methods=tuple(LABEL_TRANSFER_METHOD_NAMES),
    requires=("labels_key",),
    options=(
        TaskOption(
            "reference_key",
            str,
            "obs column marking the reference (default: leave one batch out)",
        ),
        TaskOption("reference_value", str, "value of --reference-key"),
    ),
)
def label_transfer(
    adata: ad.AnnData,
    labels_key: str,
    batch_key: str | None = None,
    reference_key: str | None = None,
    reference_value: str | None = None,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    k: int = 5,
    verbose: bool = True,
    scssl_kwargs: dict | None = None,
    **_,
) -> BenchmarkResult:
    """Label transfer from reference to query cells: macro F1 and accuracy.

    With ``reference_key``/``reference_value`` one split (reference = cells with that value);
    otherwise leave one batch of ``batch_key`` out at a time, and the scores are means over the
    folds (per-fold scores in ``details``). The unsupervised embeddings (scssl, PCA, scVI) are
    fit once on all cells without labels; each query cell gets the majority label of its ``k``
    nearest reference cells (Euclidean; ``pca_cosine``: PCA with the cosine distance). scANVI
    is trained per fold with the query labels hidden; logistic regression per fold on the
    reference's 2,000 most variable genes.
    """
    methods = check_methods("label_transfer", methods)
    splits = _splits(adata, batch_key, reference_key, reference_value)
    labels = adata.obs[labels_key].astype(str).to_numpy()
    embeddings, scvi, timings = _unsupervised(adata, methods, epochs, seed, scssl_kwargs, verbose)
    per_fold: dict[str, list[dict]] = {m: [] for m in methods}
    for name, reference in splits:
        query = ~reference
        truth = labels[query]
        progress(
            f"      split {name}: {reference.sum()} reference, {query.sum()} query cells", verbose
        )
        for method in methods:
            start = time.perf_counter()
            if method in KNN_METHODS:
                source, metric = KNN_METHODS[method]
                embedding = embeddings[source]
                predicted, _ = knn_transfer(
                    embedding[reference], labels[reference], embedding[query], k, metric
                )
            elif method == "scanvi":
                scanvi = scanvi_model(
                    scvi,
                    np.where(reference, labels, "Unknown"),
                    max_epochs=None if epochs is None else max(1, epochs // 2),
                    seed=seed,
                    enable_progress_bar=False,
                )
                predicted = np.asarray(scanvi.predict(indices=np.flatnonzero(query))).astype(str)
            else:  # logreg
                predicted = logistic_regression_transfer(
                    adata[reference], labels[reference], adata[query], seed=seed
                )
            timings[method] += time.perf_counter() - start
            per_fold[method].append(
                {
                    "split": name,
                    "macro_f1": macro_f1(truth, predicted),
                    "accuracy": accuracy(truth, predicted),
                }
            )
    settings = {
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "labels_key": labels_key,
        "batch_key": batch_key,
        "reference_key": reference_key,
        "reference_value": reference_value,
        "splits": [name for name, _ in splits],
        "k": k,
        "epochs": epochs,
        "seed": seed,
    }
    return _result(methods, per_fold, timings, settings)


def _splits(
    adata: ad.AnnData,
    batch_key: str | None,
    reference_key: str | None,
    reference_value: str | None,
) -> list[tuple[str, np.ndarray]]:
    """(name, reference mask) pairs: one reference/query split, or leave one batch out."""
    if reference_key is not None:
        if reference_key not in adata.obs:
            raise KeyError(
                f"reference_key={reference_key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)})."
            )
        column = adata.obs[reference_key].astype(str).to_numpy()
        if reference_value is None:
            raise ValueError(
                "reference_key needs reference_value: the value of the column that marks the "
                "reference cells (the others are the query)."
            )
        reference = column == str(reference_value)
        if reference.all() or not reference.any():
            raise ValueError(
                f"{reference_key} == {reference_value!r} selects {reference.sum()} of "
                f"{len(reference)} cells; reference and query must both be non-empty (values: "
                f"{sorted(set(column))})."
            )
        return [(f"{reference_key}=={reference_value} -> rest", reference)]
    if batch_key is None:
        raise ValueError(
            "label_transfer needs a batch_key (leave one batch out) or reference_key and "
            "reference_value (one reference/query split)."
        )
    batches = adata.obs[batch_key].astype(str).to_numpy()
    values = sorted(set(batches))
    if len(values) < 2:
        raise ValueError(f"batch_key={batch_key!r} has one value; leave-one-batch-out needs two.")
    return [(f"held out {batch_key}={value}", batches != value) for value in values]


def _unsupervised(adata, methods, epochs, seed, scssl_kwargs, verbose):
    """Embeddings fit once on all cells without labels, the scVI model and seconds per method.

    ``pca_cosine`` counts the seconds of the PCA it shares with ``pca``.
    """
    embeddings: dict[str, np.ndarray] = {}
    timings: dict[str, float] = dict.fromkeys(methods, 0.0)
    pca_seconds = 0.0
    scvi = None
    for method in methods:
        start = time.perf_counter()
        if method == "scssl":
            progress("      [scssl] pretraining SSLEncoder (no labels)", verbose)
            model, _ = train_scssl(adata, None, epochs, seed, **(scssl_kwargs or {}))
            embeddings[method] = model.get_latent_representation()
        elif method in ("pca", "pca_cosine"):
            if "pca" not in embeddings:
                progress("      [pca] PCA-50 on 2,000 HVGs", verbose)
                embeddings["pca"] = pca_embedding(adata, seed=seed)
                pca_seconds = time.perf_counter() - start
            timings[method] += pca_seconds
            continue
        elif method in ("scvi", "scanvi") and scvi is None:
            progress("      [scvi] training scVI (no labels)", verbose)
            scvi = train_scvi(adata, None, epochs, seed)
            if "scvi" in methods:
                embeddings["scvi"] = scvi.get_latent_representation()
        timings[method] += time.perf_counter() - start
    return embeddings, scvi, timings


def _result(methods, per_fold, timings, settings) -> BenchmarkResult:
    rows = [
        {
            "method": method,
            "name": LABEL_TRANSFER_METHOD_NAMES[method],
            "macro_f1": float(np.mean([f["macro_f1"] for f in per_fold[method]])),
            "accuracy": float(np.mean([f["accuracy"] for f in per_fold[method]])),
            "seconds": round(timings[method], 1),
        }
        for method in methods
    ]
    return BenchmarkResult(
        task="label_transfer",
        dataset="",
        rows=rows,
        metrics=["macro_f1", "accuracy"],
        primary="macro_f1",
        settings=settings,
        notes=[
            "Scores are means over the splits (per split in details.per_split)."
            if len(settings["splits"]) > 1
            else "One reference/query split.",
            "Unsupervised embeddings are fit once on all cells without labels.",
        ],
        details={"per_split": per_fold},
    )
