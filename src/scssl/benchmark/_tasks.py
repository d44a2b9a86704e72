"""Benchmark tasks: scssl against the methods users would pick instead, on the user's data.

Each task is a function registered in :data:`TASKS` with :func:`register_task`. It receives an
AnnData of raw counts and the options of :func:`run_benchmark`, and returns a
:class:`BenchmarkResult` (one row of scores per method). :func:`run_benchmark` writes it as
``results.json``, ``report.md`` and PNG plots. A new task is one decorated function.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np

from scssl.metrics import accuracy, macro_f1, mean_squared_error, weighted_explained_variance

from ._baselines import (
    highly_variable_genes,
    log_normalize,
    logistic_regression_transfer,
    pca_embedding,
)
from ._knn import knn_transfer


@dataclass
class BenchmarkResult:
    """Scores of one task on one dataset.

    Attributes
    ----------
    task
        Task name (a key of :data:`TASKS`).
    dataset
        Name of the data (file name or given name).
    rows
        One dict per method: ``{"method": name, <metric>: value, ...}``.
    metrics
        Metric columns in report order.
    primary
        The metric that ranks methods (plotted first).
    settings
        Options the task ran with (cells, genes, keys, epochs, seed ...).
    notes
        Sentences for the report (what was run, what was skipped and why).
    details
        Further task-specific results (per-fold scores, per-metric scib tables).

    """

    task: str
    dataset: str
    rows: list[dict]
    metrics: list[str]
    primary: str
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return _jsonable(asdict(self))

    def row(self, method: str) -> dict:
        """The row of ``method``."""
        for row in self.rows:
            if row["method"] == method:
                return row
        raise KeyError(f"No row for method {method!r}; methods: {[r['method'] for r in self.rows]}")


TaskFunction = Callable[..., BenchmarkResult]
TASKS: dict[str, TaskFunction] = {}
#: Methods each task can run, in default order.
TASK_METHODS: dict[str, tuple[str, ...]] = {}
#: obs columns each task needs (``"batch_key"``, ``"label_key"``).
TASK_REQUIRES: dict[str, tuple[str, ...]] = {}
#: Tasks whose data are a MuData (``.h5mu``) rather than an AnnData.
MUDATA_TASKS: set[str] = set()


def register_task(
    name: str, methods: Sequence[str], requires: Sequence[str] = (), mudata: bool = False
) -> Callable[[TaskFunction], TaskFunction]:
    """Register a benchmark task under ``name``.

    Parameters
    ----------
    name
        Task name used by :func:`run_benchmark` and ``scssl benchmark --task``.
    methods
        Methods the task knows, in default order.
    requires
        Which of ``"batch_key"`` and ``"label_key"`` the task cannot run without.
    mudata
        The task takes a MuData (multimodal data) instead of an AnnData.

    """

    def decorator(function: TaskFunction) -> TaskFunction:
        TASKS[name] = function
        TASK_METHODS[name] = tuple(methods)
        TASK_REQUIRES[name] = tuple(requires)
        if mudata:
            MUDATA_TASKS.add(name)
        return function

    return decorator


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _log(message: str, verbose: bool) -> None:
    if verbose:
        print(message, flush=True)


# ----------------------------------------------------------------------------- embeddings
def _train_scssl(
    adata: ad.AnnData,
    batch_key: str | None,
    epochs: int | None,
    seed: int,
    batch_centering: bool = True,
    **model_kwargs,
):
    import scvi

    from scssl.model import SSLEncoder

    scvi.settings.seed = seed
    data = ad.AnnData(X=adata.X, obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    if batch_key is not None:
        data.obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
    SSLEncoder.setup_anndata(data, batch_key=batch_key)
    model = SSLEncoder(data, batch_centering=batch_centering, **model_kwargs)
    # Minibatches of 64 give small datasets enough optimisation steps (as `scssl demo`); larger
    # data get enough steps with the default 128, at half the time per epoch.
    batch_size = 64 if adata.n_obs < 5000 else 128
    model.train(
        max_epochs=epochs, batch_size=batch_size, early_stopping=True, enable_progress_bar=False
    )
    return model, data


def _scvi_model(adata: ad.AnnData, batch_key: str | None, epochs: int | None, seed: int):
    import scvi

    scvi.settings.seed = seed
    data = ad.AnnData(X=adata.X.copy(), obs=adata.obs.copy(), var=adata.var[[]].copy())
    scvi.model.SCVI.setup_anndata(data, batch_key=batch_key)
    model = scvi.model.SCVI(data)
    model.train(max_epochs=epochs, early_stopping=epochs is None, enable_progress_bar=False)
    return model


def _scanvi_model(scvi_model, label_key: str, labels, epochs: int | None, seed: int):
    """ScANVI from a trained scVI model; ``labels`` with ``"Unknown"`` for unlabelled cells."""
    import scvi

    scvi.settings.seed = seed
    scvi_model.adata.obs["_scssl_labels"] = np.asarray(labels).astype(str)
    model = scvi.model.SCANVI.from_scvi_model(
        scvi_model, unlabeled_category="Unknown", labels_key="_scssl_labels"
    )
    model.train(
        max_epochs=None if epochs is None else max(1, epochs // 2),
        n_samples_per_label=100,
        enable_progress_bar=False,
    )
    return model


def _epochs_trained(model) -> int:
    """Epochs a scvi-tools model trained for (fewer than asked when it stopped early)."""
    return len(model.history["train_loss"])


def _check_methods(task: str, methods: Sequence[str] | None) -> list[str]:
    known = TASK_METHODS[task]
    if methods is None:
        return list(known)
    methods = list(methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(
            f"Unknown method(s) {unknown} for task {task!r}; choose from {list(known)}."
        )
    if not methods:
        raise ValueError(f"No methods given for task {task!r}; choose from {list(known)}.")
    return methods


# ----------------------------------------------------------------------------- integration
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


@register_task(
    "integration",
    methods=("scssl", "scssl_uncentred", "scssl_adversarial", "pca", "scvi", "scanvi"),
    requires=("batch_key", "label_key"),
)
def integration(
    adata: ad.AnnData,
    batch_key: str,
    label_key: str,
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
    (``label_key``), batch correction (``batch_key``) and their weighted total (0.6 bio +
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
    try:
        from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The integration task needs scib-metrics: pip install 'scssl[benchmark]'."
        ) from error

    methods = _check_methods("integration", methods)
    adata = adata.copy()
    adata.obs[batch_key] = adata.obs[batch_key].astype(str).astype("category")
    adata.obs[label_key] = adata.obs[label_key].astype(str).astype("category")
    if n_top_genes is not None and n_top_genes < adata.n_vars:
        keep = highly_variable_genes(log_normalize(adata), n_top_genes, batch_key=batch_key)
        adata = adata[:, keep].copy()
        _log(f"      {adata.n_vars} batch-aware highly variable genes", verbose)
    timings: dict[str, float] = {}
    trained_epochs: dict[str, int] = {}
    embeddings: dict[str, np.ndarray] = {}
    scvi_model = None
    _log("      computing the unintegrated PCA (scib reference)", verbose)
    adata.obsm["X_pca"] = pca_embedding(adata, seed=seed)
    for method in methods:
        _log(f"      [{method}] {INTEGRATION_METHOD_NAMES[method]}", verbose)
        start = time.perf_counter()
        if method.startswith("scssl"):
            kwargs = dict(scssl_kwargs or {})
            weight = kwargs.pop("batch_adversary_weight", DEFAULT_BATCH_ADVERSARY_WEIGHT)
            if method == "scssl_adversarial":
                kwargs["batch_adversary_weight"] = weight
            model, _ = _train_scssl(
                adata,
                batch_key,
                epochs if scssl_epochs is None else scssl_epochs,
                seed,
                method == "scssl",
                **kwargs,
            )
            embeddings[method] = model.get_latent_representation()
            trained_epochs[method] = _epochs_trained(model)
        elif method == "pca":
            embeddings[method] = adata.obsm["X_pca"]
        elif method == "scvi" or (method == "scanvi" and scvi_model is None):
            scvi_model = _scvi_model(adata, batch_key, epochs, seed)
            trained_epochs["scvi"] = _epochs_trained(scvi_model)
            if method == "scvi":
                embeddings[method] = scvi_model.get_latent_representation()
        if method == "scanvi":
            scanvi = _scanvi_model(scvi_model, label_key, adata.obs[label_key], epochs, seed)
            embeddings[method] = scanvi.get_latent_representation()
            trained_epochs[method] = _epochs_trained(scanvi)
        timings[method] = time.perf_counter() - start
    for method, embedding in embeddings.items():
        adata.obsm[f"X_{method}"] = np.asarray(embedding, dtype=np.float32)

    _log(
        f"      scib-metrics Benchmarker on {adata.n_obs} cells "
        "(JAX compiles on the first call: about a minute)",
        verbose,
    )
    start = time.perf_counter()
    benchmarker = Benchmarker(
        adata,
        batch_key=batch_key,
        label_key=label_key,
        embedding_obsm_keys=[f"X_{m}" for m in methods],
        pre_integrated_embedding_obsm_key="X_pca",
        bio_conservation_metrics=BioConservation(),
        batch_correction_metrics=BatchCorrection(),
        n_jobs=n_jobs,
        progress_bar=False,
    )
    benchmarker.benchmark()
    scib_seconds = time.perf_counter() - start
    table = benchmarker.get_results(min_max_scale=False)
    metric_type = table.loc["Metric Type"]
    scores = table.drop(index="Metric Type").astype(float)
    rows = []
    for method in methods:
        values = scores.loc[f"X_{method}"]
        rows.append(
            {
                "method": method,
                "name": INTEGRATION_METHOD_NAMES[method],
                "bio_conservation": float(values["Bio conservation"]),
                "batch_correction": float(values["Batch correction"]),
                "total": float(values["Total"]),
                "epochs": trained_epochs.get(method),
                "seconds": round(timings[method], 1),
            }
        )
    per_metric = {
        method: {
            column: float(scores.loc[f"X_{method}", column])
            for column in scores.columns
            if column not in ("Bio conservation", "Batch correction", "Total")
        }
        for method in methods
    }
    return BenchmarkResult(
        task="integration",
        dataset="",
        rows=rows,
        metrics=["total", "bio_conservation", "batch_correction"],
        primary="total",
        settings={
            "n_cells": adata.n_obs,
            "n_genes": adata.n_vars,
            "n_top_genes": n_top_genes,
            "batch_key": batch_key,
            "label_key": label_key,
            "n_batches": int(adata.obs[batch_key].nunique()),
            "n_labels": int(adata.obs[label_key].nunique()),
            "epochs": epochs,
            "scssl_epochs": scssl_epochs,
            "seed": seed,
            "scib_seconds": round(scib_seconds, 1),
            "scssl_kwargs": scssl_kwargs or {},
        },
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


# ----------------------------------------------------------------------------- label transfer
LABEL_TRANSFER_METHOD_NAMES = {
    "scssl": "scssl SSLEncoder + kNN (k=5)",
    "pca": "PCA-50 on 2,000 HVGs + kNN (k=5)",
    "scvi": "scVI + kNN (k=5)",
    "scanvi": "scANVI (query labels hidden)",
    "logreg": "logistic regression, 2,000 HVGs",
}


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


@register_task(
    "label_transfer",
    methods=("scssl", "pca", "scvi", "scanvi", "logreg"),
    requires=("label_key",),
)
def label_transfer(
    adata: ad.AnnData,
    label_key: str,
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
    nearest reference cells. scANVI is trained per fold with the query labels hidden; logistic
    regression per fold on the reference's 2,000 most variable genes.
    """
    methods = _check_methods("label_transfer", methods)
    splits = _splits(adata, batch_key, reference_key, reference_value)
    labels = adata.obs[label_key].astype(str).to_numpy()
    embeddings: dict[str, np.ndarray] = {}
    timings: dict[str, float] = dict.fromkeys(methods, 0.0)
    scvi_model = None
    for method in methods:
        start = time.perf_counter()
        if method == "scssl":
            _log("      [scssl] pretraining SSLEncoder (no labels)", verbose)
            model, _ = _train_scssl(adata, None, epochs, seed, **(scssl_kwargs or {}))
            embeddings[method] = model.get_latent_representation()
        elif method == "pca":
            _log("      [pca] PCA-50 on 2,000 HVGs", verbose)
            embeddings[method] = pca_embedding(adata, seed=seed)
        elif method in ("scvi", "scanvi") and scvi_model is None:
            _log("      [scvi] training scVI (no labels)", verbose)
            scvi_model = _scvi_model(adata, None, epochs, seed)
            if "scvi" in methods:
                embeddings["scvi"] = scvi_model.get_latent_representation()
        timings[method] += time.perf_counter() - start

    per_fold: dict[str, list[dict]] = {m: [] for m in methods}
    for name, reference in splits:
        query = ~reference
        truth = labels[query]
        _log(f"      split {name}: {reference.sum()} reference, {query.sum()} query cells", verbose)
        for method in methods:
            start = time.perf_counter()
            if method in embeddings:
                predicted, _ = knn_transfer(
                    embeddings[method][reference], labels[reference], embeddings[method][query], k
                )
            elif method == "scanvi":
                hidden = np.where(reference, labels, "Unknown")
                scanvi = _scanvi_model(scvi_model, label_key, hidden, epochs, seed)
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
        settings={
            "n_cells": adata.n_obs,
            "n_genes": adata.n_vars,
            "label_key": label_key,
            "batch_key": batch_key,
            "reference_key": reference_key,
            "reference_value": reference_value,
            "splits": [name for name, _ in splits],
            "k": k,
            "epochs": epochs,
            "seed": seed,
        },
        notes=[
            "Scores are means over the splits (per split in details.per_split)."
            if len(splits) > 1
            else "One reference/query split.",
            "Unsupervised embeddings are fit once on all cells without labels.",
        ],
        details={"per_split": per_fold},
    )


# ----------------------------------------------------------------------------- reconstruction
RECONSTRUCTION_METHOD_NAMES = {
    "scssl": "scssl SSLEncoder (random mask) decoder",
    "pca": "PCA-50 (all genes) projection",
    "scvi": "scVI normalised expression",
}


def _log1p_dense(adata: ad.AnnData) -> np.ndarray:
    values = log_normalize(adata).X
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


@register_task("reconstruction", methods=("scssl", "pca", "scvi"))
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
    import scvi
    from sklearn.decomposition import PCA

    methods = _check_methods("reconstruction", methods)
    if not 0 < held_out < 1:
        raise ValueError(f"held_out={held_out}; give a share of cells between 0 and 1.")
    rng = np.random.default_rng(seed)
    test = np.zeros(adata.n_obs, dtype=bool)
    test[rng.choice(adata.n_obs, max(1, round(held_out * adata.n_obs)), replace=False)] = True
    train_data, test_data = adata[~test].copy(), adata[test].copy()
    truth = _log1p_dense(test_data)
    rows, timings = [], {}
    for method in methods:
        _log(f"      [{method}] {RECONSTRUCTION_METHOD_NAMES[method]}", verbose)
        start = time.perf_counter()
        if method == "scssl":
            model, _ = _train_scssl(
                train_data, batch_key, epochs, seed, batch_centering=False, **(scssl_kwargs or {})
            )
            query = test_data.copy()
            if batch_key is not None:
                query.obs[batch_key] = query.obs[batch_key].astype(str)
            predicted = model.get_reconstructed_expression(query, return_numpy=True)
        elif method == "pca":
            train_log = _log1p_dense(train_data)
            n_comps = min(50, train_log.shape[0] - 1, train_log.shape[1] - 1)
            pca = PCA(n_components=n_comps, random_state=seed).fit(train_log)
            predicted = pca.inverse_transform(pca.transform(truth))
        else:
            model = _scvi_model(train_data, batch_key, epochs, seed)
            scvi.settings.seed = seed
            query = ad.AnnData(
                X=test_data.X.copy(), obs=test_data.obs.copy(), var=test_data.var[[]]
            )
            normalised = model.get_normalized_expression(query, library_size=1e4, return_numpy=True)
            predicted = np.log1p(normalised)
        timings[method] = time.perf_counter() - start
        rows.append(
            {
                "method": method,
                "name": RECONSTRUCTION_METHOD_NAMES[method],
                "weighted_explained_variance": weighted_explained_variance(truth, predicted),
                "mse": mean_squared_error(truth, predicted),
                "seconds": round(timings[method], 1),
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


# ----------------------------------------------------------------------------- runner
def _subsample(adata: ad.AnnData, max_cells: int | None, seed: int) -> ad.AnnData:
    if max_cells is None or adata.n_obs <= max_cells:
        return adata
    if max_cells < 10:
        raise ValueError(f"max_cells={max_cells}; give at least 10 cells.")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(adata.n_obs, max_cells, replace=False))
    return adata[keep].copy()


def run_benchmark(
    adata: ad.AnnData | str | Path,
    task: str,
    out: str | Path | None = None,
    batch_key: str | None = None,
    label_key: str | None = None,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    max_cells: int | None = None,
    layer: str | None = None,
    seed: int = 0,
    dataset: str | None = None,
    plots: bool = True,
    verbose: bool = True,
    **task_kwargs,
) -> BenchmarkResult:
    """Run a benchmark task and write ``results.json``, ``report.md`` and PNG plots.

    Parameters
    ----------
    adata
        Raw counts (in ``.X`` or ``layer``), or the path of an ``.h5ad`` file; for the
        ``protein`` task a MuData of RNA and protein counts, or the path of an ``.h5mu`` file.
    task
        A key of :data:`TASKS`: ``"integration"``, ``"label_transfer"``, ``"reconstruction"``,
        ``"protein"``.
    out
        Output folder; ``None`` writes nothing.
    batch_key, label_key
        ``obs`` columns of batches and cell types.
    methods
        Methods to run (default: all of the task, see :data:`TASK_METHODS`).
    epochs
        Training epochs of the neural methods (``None``: each tool's default heuristic).
    max_cells
        Subsample to at most this many cells (fixed seed).
    layer
        Layer holding the counts; ``None`` uses ``.X``.
    seed
        Random seed of every method and of the subsample.
    dataset
        Name in the report (default: the file name).
    plots
        Write PNG plots (through :mod:`scssl.pl`).
    verbose
        Print progress messages.
    **task_kwargs
        Options of the task function (e.g. ``reference_key``, ``reference_value``,
        ``scssl_kwargs``, ``held_out``, ``n_top_genes``, ``scssl_epochs``, ``rna_mod``,
        ``protein_mod``).

    Returns
    -------
    The scores, also written to ``out``.

    Raises
    ------
    ValueError
        For an unknown task or method, or a missing key the task needs.
    KeyError
        When ``batch_key``, ``label_key`` or ``layer`` are not in the data.

    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}.")
    keys = {"batch_key": batch_key, "label_key": label_key}
    missing = [name for name in TASK_REQUIRES[task] if keys[name] is None]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ValueError(f"Task {task!r} needs {', '.join(missing)} ({flags} on the command line).")
    methods = _check_methods(task, methods)
    if isinstance(adata, str | Path):
        if dataset is None:
            dataset = Path(adata).stem
        adata = _read(Path(adata), task in MUDATA_TASKS, verbose)
    dataset = dataset or "adata"
    if task in MUDATA_TASKS:
        if layer is not None:
            raise ValueError(
                f"layer= applies to AnnData tasks; task {task!r} reads the counts from .X of "
                "each modality."
            )
    else:
        adata = _checked_anndata(adata, task, keys, layer)
    adata = _subsample(adata, max_cells, seed)
    _log(
        f"Task {task} on {dataset}: {adata.n_obs} cells x {adata.n_vars} features; methods "
        f"{', '.join(methods)}",
        verbose,
    )
    start = time.perf_counter()
    result = TASKS[task](
        adata,
        batch_key=batch_key,
        label_key=label_key,
        methods=methods,
        epochs=epochs,
        seed=seed,
        verbose=verbose,
        **task_kwargs,
    )
    result.dataset = dataset
    result.settings["total_seconds"] = round(time.perf_counter() - start, 1)
    if out is not None:
        from ._report import write_report

        written = write_report(result, out, plots=plots)
        _log("Wrote " + ", ".join(str(p) for p in written), verbose)
    return result


def _checked_anndata(adata, task: str, keys: dict, layer: str | None) -> ad.AnnData:
    """``adata`` with the counts of ``layer`` in ``.X``, after checking the obs keys exist."""
    if not isinstance(adata, ad.AnnData):
        raise ValueError(
            f"Task {task!r} needs an AnnData (.h5ad), got {type(adata).__name__}; for a MuData "
            "pass its RNA modality (mdata.mod['rna'])."
        )
    for name, key in keys.items():
        if key is not None and key not in adata.obs:
            raise KeyError(
                f"{name}={key!r} is not a column of obs (columns: {list(adata.obs.columns)})."
            )
    if layer is None:
        return adata
    if layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in layers ({list(adata.layers)}).")
    return ad.AnnData(X=adata.layers[layer], obs=adata.obs, var=adata.var)


def _read(path: Path, multimodal: bool, verbose: bool):
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    _log(f"Reading {path}", verbose)
    if not multimodal:
        return ad.read_h5ad(path)
    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.read_h5mu(str(path))


def load_results(path: str | Path) -> BenchmarkResult:
    """Read a ``results.json`` written by :func:`run_benchmark`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    return BenchmarkResult(**json.loads(path.read_text()))


__all__ = [
    "MUDATA_TASKS",
    "TASKS",
    "TASK_METHODS",
    "BenchmarkResult",
    "integration",
    "label_transfer",
    "load_results",
    "reconstruction",
    "register_task",
    "run_benchmark",
]
