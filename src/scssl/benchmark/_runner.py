"""Run a registered benchmark task on the user's data and write its report.

Each task is a function registered in :data:`~scssl.benchmark.TASKS` with
:func:`~scssl.benchmark.register_task`. It receives an AnnData of raw counts (or a MuData) and
the options of :func:`run_benchmark`, and returns a :class:`~scssl.benchmark.BenchmarkResult`
(one row of scores per method). :func:`run_benchmark` writes it as ``results.json``,
``report.md`` and PNG plots.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np

from scssl.data import expression_matrix
from scssl.data._warnings import warn_user

from ._registry import MUDATA_TASKS, TASK_REQUIRES, TASKS, check_methods, progress
from ._report import write_report
from ._result import BenchmarkResult


def run_benchmark(
    adata: ad.AnnData | str | Path,
    task: str,
    out: str | Path | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
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
        A key of :data:`~scssl.benchmark.TASKS`: ``"integration"``, ``"label_transfer"``,
        ``"reconstruction"``, ``"protein"`` or a task registered since.
    out
        Output folder; ``None`` writes nothing.
    batch_key, labels_key
        ``obs`` columns of batches and cell types (``label_key=`` still works, deprecated).
    methods
        Methods to run (default: all of the task, see :data:`~scssl.benchmark.TASK_METHODS`).
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
        When ``batch_key``, ``labels_key`` or ``layer`` are not in the data.

    """
    if "label_key" in task_kwargs:
        labels_key = _deprecated_label_key(labels_key, task_kwargs.pop("label_key"))
    keys = {"batch_key": batch_key, "labels_key": labels_key}
    methods = _checked_task(task, keys, methods)
    if isinstance(adata, str | Path):
        dataset = Path(adata).stem if dataset is None else dataset
        adata = _read(Path(adata), task in MUDATA_TASKS, verbose)
    dataset = dataset or "adata"
    adata = _subsample(_checked_data(adata, task, keys, layer), max_cells, seed)
    progress(
        f"Task {task} on {dataset}: {adata.n_obs} cells x {adata.n_vars} features; methods "
        f"{', '.join(methods)}",
        verbose,
    )
    start = time.perf_counter()
    result = TASKS[task](
        adata, methods=methods, epochs=epochs, seed=seed, verbose=verbose, **keys, **task_kwargs
    )
    result.dataset = dataset
    result.settings["total_seconds"] = round(time.perf_counter() - start, 1)
    if out is not None:
        written = write_report(result, out, plots=plots)
        progress("Wrote " + ", ".join(str(p) for p in written), verbose)
    return result


def _deprecated_label_key(labels_key: str | None, label_key: str | None) -> str | None:
    warn_user(
        "run_benchmark(label_key=...) is deprecated; use labels_key= (as scssl.tl and "
        "scssl.model do).",
        FutureWarning,
    )
    if labels_key is not None and label_key is not None and labels_key != label_key:
        raise ValueError(f"labels_key={labels_key!r} and label_key={label_key!r} differ.")
    return labels_key if labels_key is not None else label_key


def _checked_task(task: str, keys: dict, methods: Sequence[str] | None) -> list[str]:
    """The methods to run, after checking the task exists and has the keys it needs."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}.")
    missing = [name for name in TASK_REQUIRES[task] if keys[name] is None]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ValueError(f"Task {task!r} needs {', '.join(missing)} ({flags} on the command line).")
    return check_methods(task, methods)


def _checked_data(adata, task: str, keys: dict, layer: str | None):
    """The task's data: for an AnnData task, ``adata`` with the counts of ``layer`` in ``.X``."""
    if task in MUDATA_TASKS:
        if layer is not None:
            raise ValueError(
                f"layer= applies to AnnData tasks; task {task!r} reads the counts from .X of "
                "each modality."
            )
        return adata
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
    return ad.AnnData(X=expression_matrix(adata, layer), obs=adata.obs, var=adata.var)


def _subsample(adata, max_cells: int | None, seed: int):
    if max_cells is None or adata.n_obs <= max_cells:
        return adata
    if max_cells < 10:
        raise ValueError(f"max_cells={max_cells}; give at least 10 cells.")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(adata.n_obs, max_cells, replace=False))
    return adata[keep].copy()


def _read(path: Path, multimodal: bool, verbose: bool):
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    progress(f"Reading {path}", verbose)
    if not multimodal:
        return ad.read_h5ad(path)
    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.read_h5mu(str(path))
