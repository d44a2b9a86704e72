"""A new benchmark task is one decorated function: run_benchmark and the CLI find it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scssl.benchmark import (
    TASK_METHODS,
    TASK_OPTIONS,
    TASKS,
    BenchmarkResult,
    TaskOption,
    register_task,
    run_benchmark,
    tasks,
    unregister_task,
)
from scssl.cli import build_parser, main


@pytest.fixture
def toy_task():
    """A task registered by this test only: library size quantiles, with its own option."""

    @register_task(
        "library_size",
        methods=("raw", "log"),
        requires=("batch_key",),
        options=(TaskOption("quantile", float, "quantile of the library sizes (default 0.5)"),),
    )
    def library_size(adata, batch_key, methods=None, quantile: float = 0.5, **_):
        sizes = np.asarray(adata.X.sum(axis=1)).ravel()
        values = {"raw": sizes, "log": np.log1p(sizes)}
        return BenchmarkResult(
            task="library_size",
            dataset="",
            rows=[{"method": m, "size": float(np.quantile(values[m], quantile))} for m in methods],
            metrics=["size"],
            primary="size",
            settings={"quantile": quantile, "n_batches": int(adata.obs[batch_key].nunique())},
        )

    yield library_size
    unregister_task("library_size")
    assert "library_size" not in TASKS


def test_the_shipped_tasks_are_discovered():
    assert tasks.TASK_MODULES == ["integration", "label_transfer", "protein", "reconstruction"]
    assert set(tasks.TASK_MODULES) <= set(TASKS)
    assert TASK_METHODS["label_transfer"] == (
        "scssl",
        "pca",
        "pca_cosine",
        "scvi",
        "scanvi",
        "logreg",
    )
    assert [o.name for o in TASK_OPTIONS["protein"]] == ["held_out", "rna_mod", "protein_mod"]


def test_a_new_task_runs_through_run_benchmark(toy_task, kang_demo, tmp_path):
    adata = kang_demo[::10].copy()  # both conditions
    result = run_benchmark(
        adata, "library_size", out=tmp_path, batch_key="stim", quantile=0.9, verbose=False
    )
    expected = np.quantile(np.asarray(adata.X.sum(axis=1)).ravel(), 0.9)
    assert result.row("raw")["size"] == pytest.approx(expected)
    assert [row["method"] for row in result.rows] == ["raw", "log"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "scores.png").exists()
    with pytest.raises(ValueError, match="needs batch_key"):
        run_benchmark(adata, "library_size", verbose=False)


def test_a_new_task_runs_through_the_cli(toy_task, kang_demo, tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(
        ["benchmark", "--data", "x.h5ad", "--task", "library_size", "--out", "o",
         "--methods", "log", "--quantile", "0.25"]
    )  # fmt: skip
    assert args.task == "library_size" and args.methods == ["log"] and args.quantile == 0.25
    help_text = parser._subparsers._group_actions[0].choices["benchmark"].format_help()
    assert "library_size: quantile of the library sizes" in help_text

    data = tmp_path / "cells.h5ad"
    kang_demo[::10].copy().write_h5ad(data)  # both conditions
    out = tmp_path / "out"
    common = ["benchmark", "--data", str(data), "--out", str(out), "--batch-key", "stim"]
    assert main([*common, "--task", "library_size", "--quantile", "0.9", "--no-plots"]) == 0
    written = json.loads((out / "results.json").read_text())
    assert written["settings"]["quantile"] == 0.9 and written["settings"]["n_batches"] == 2
    assert "| raw |" in capsys.readouterr().out
    # The option belongs to its task: another task refuses it with a clear message.
    assert main([*common, "--task", "reconstruction", "--quantile", "0.9"]) == 2
    assert "--quantile applies to the library_size task" in capsys.readouterr().err


def test_register_task_refuses_clashing_options_and_unknown_keys():
    with pytest.raises(ValueError, match=r"\['seed'\] of 'bad' clash"):
        register_task("bad", methods=("m",), options=(TaskOption("seed", int),))
    with pytest.raises(ValueError, match="a task can require"):
        register_task("bad", methods=("m",), requires=("label_key",))
    assert "bad" not in TASKS
