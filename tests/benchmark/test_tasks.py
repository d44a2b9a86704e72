"""Benchmark task runners: scores, results.json, report.md and plots; argument errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from scssl.benchmark import (
    BenchmarkResult,
    knn_transfer,
    load_results,
    macro_f1,
    pca_embedding,
    run_benchmark,
)
from scssl.benchmark.tasks import label_transfer as label_transfer_task


@pytest.fixture
def kang_400(kang_demo):
    """400 real Kang cells (both conditions) x their 1,500 most-counted genes."""
    counts = np.asarray(kang_demo.X.sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-counts)[:1500])
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(kang_demo.n_obs, 400, replace=False))
    return kang_demo[cells, genes].copy()


def _check_outputs(out, result: BenchmarkResult, methods):
    data = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in data["rows"]] == list(methods)
    assert (out / "scores.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    for row in result.rows:
        assert row["name"] in report
    assert "scores.png" in report
    assert load_results(out).rows == data["rows"]


def test_label_transfer_reference_query(kang_400, tmp_path):
    methods = ["scssl", "pca", "logreg"]
    result = run_benchmark(
        kang_400,
        "label_transfer",
        out=tmp_path,
        labels_key="cell_type",
        reference_key="stim",
        reference_value="CTRL",
        methods=methods,
        epochs=2,
        verbose=False,
    )
    _check_outputs(tmp_path, result, methods)
    for row in result.rows:
        assert 0 <= row["macro_f1"] <= 1 and 0 <= row["accuracy"] <= 1
    # Real scores on real cells: PCA kNN and logistic regression beat chance clearly.
    n_types = kang_400.obs["cell_type"].nunique()
    assert result.row("logreg")["accuracy"] > 2 / n_types
    assert result.settings["splits"] == ["stim==CTRL -> rest"]


def test_label_transfer_leave_one_batch_out(kang_400, monkeypatch):
    calls = []

    def counted_pca(*args, **kwargs):
        calls.append(1)
        return pca_embedding(*args, **kwargs)

    monkeypatch.setattr(label_transfer_task, "pca_embedding", counted_pca)
    result = run_benchmark(
        kang_400,
        "label_transfer",
        batch_key="stim",
        labels_key="cell_type",
        methods=["pca", "pca_cosine", "logreg"],
        verbose=False,
    )
    folds = result.details["per_split"]["pca"]
    # the cosine row votes in the same PCA (computed once) with the cosine distance
    assert len(calls) == 1
    embedding = pca_embedding(kang_400, seed=0)
    labels = kang_400.obs["cell_type"].astype(str).to_numpy()
    for fold in result.details["per_split"]["pca_cosine"]:
        reference = (kang_400.obs["stim"] != fold["split"].split("=")[-1]).to_numpy()
        predicted, _ = knn_transfer(
            embedding[reference], labels[reference], embedding[~reference], 5, "cosine"
        )
        assert fold["macro_f1"] == pytest.approx(macro_f1(labels[~reference], predicted))
    assert [f["split"] for f in folds] == ["held out stim=CTRL", "held out stim=STIM"]
    assert result.row("pca")["macro_f1"] == pytest.approx(np.mean([f["macro_f1"] for f in folds]))


def test_reconstruction(kang_400, tmp_path):
    methods = ["scssl", "pca", "scvi"]
    result = run_benchmark(
        kang_400,
        "reconstruction",
        out=tmp_path,
        methods=methods,
        epochs=2,
        verbose=False,
        held_out=0.2,
    )
    _check_outputs(tmp_path, result, methods)
    assert result.settings["n_held_out"] == 80
    # 50 principal components of 1,500 genes explain part of the held-out variance, not all.
    assert 0.05 < result.row("pca")["weighted_explained_variance"] < 0.95
    for row in result.rows:
        assert row["mse"] > 0 and np.isfinite(row["weighted_explained_variance"])


def test_argument_errors(kang_400):
    with pytest.raises(ValueError, match="needs batch_key"):
        run_benchmark(kang_400, "integration", labels_key="cell_type", verbose=False)
    with pytest.raises(ValueError, match="Unknown task"):
        run_benchmark(kang_400, "clustering", verbose=False)
    with pytest.raises(ValueError, match="Unknown method"):
        run_benchmark(
            kang_400, "label_transfer", labels_key="cell_type", methods=["umap"], verbose=False
        )
    with pytest.raises(KeyError, match="not a column of obs"):
        run_benchmark(
            kang_400, "integration", batch_key="donor", labels_key="cell_type", verbose=False
        )
    with pytest.raises(ValueError, match="reference_value"):
        run_benchmark(
            kang_400, "label_transfer", labels_key="cell_type", reference_key="stim", verbose=False
        )
    with pytest.raises(FileNotFoundError):
        run_benchmark("no/such/file.h5ad", "reconstruction", verbose=False)


def test_label_key_still_works_with_a_warning(kang_400):
    with pytest.warns(FutureWarning, match="labels_key"):
        result = run_benchmark(
            kang_400,
            "label_transfer",
            batch_key="stim",
            label_key="cell_type",
            methods=["pca"],
            verbose=False,
        )
    assert result.settings["labels_key"] == "cell_type"
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="differ"):
        run_benchmark(
            kang_400, "label_transfer", labels_key="cell_type", label_key="stim", verbose=False
        )


@pytest.mark.skipif(
    os.environ.get("SCSSL_SCIB_TESTS") != "1",
    reason="scib-metrics compiles JAX for ~70 s or more; set SCSSL_SCIB_TESTS=1 to run",
)
def test_integration_with_scib(kang_400, tmp_path):
    pytest.importorskip("scib_metrics")
    methods = ["scssl", "pca", "scvi"]
    result = run_benchmark(
        kang_400,
        "integration",
        out=tmp_path,
        batch_key="stim",
        labels_key="cell_type",
        methods=methods,
        epochs=2,
        verbose=False,
    )
    _check_outputs(tmp_path, result, methods)
    for row in result.rows:
        assert 0 < row["total"] < 1
        assert row["total"] == pytest.approx(
            0.6 * row["bio_conservation"] + 0.4 * row["batch_correction"], abs=1e-6
        )


# ------------------------------------------------------------------ protein
def _citeseq_subset(path, n_cells: int = 400, n_genes: int = 1500):
    import warnings

    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rna = md.read_h5ad(str(path), "rna")
        prot = md.read_h5ad(str(path), "prot")
        cells = np.sort(np.random.default_rng(0).choice(rna.n_obs, n_cells, replace=False))
        counts = np.asarray(rna.X.sum(axis=0)).ravel()
        genes = np.sort(np.argsort(-counts)[:n_genes])
        return md.MuData({"rna": rna[cells, genes].copy(), "prot": prot[cells].copy()})


def test_protein_task_on_real_citeseq(shared_file, tmp_path):
    mdata = _citeseq_subset(shared_file("pbmc5k_citeseq.h5mu"))
    methods = ["scssl", "totalvi", "ridge"]
    result = run_benchmark(
        mdata, "protein", out=tmp_path, methods=methods, epochs=3, dataset="pbmc5k", verbose=False
    )
    _check_outputs(tmp_path, result, methods)
    assert result.settings["protein_mod"] == "prot"
    assert result.settings["n_held_out"] == 80
    for row in result.rows:
        assert -1 <= row["pearson_flattened"] <= 1 and row["mse"] > 0
    # Proteins are predictable from RNA: ridge regression is far above chance on real cells.
    assert result.row("ridge")["pearson_flattened"] > 0.5
    assert set(result.details["per_protein"]["ridge"]) == set(mdata.mod["prot"].var_names)


def test_protein_task_errors(kang_400):
    import mudata as md

    with pytest.raises(ValueError, match="needs a MuData"):
        run_benchmark(kang_400, "protein", verbose=False)
    rna_only = md.MuData({"rna": kang_400.copy()})
    with pytest.raises(KeyError, match="No protein modality"):
        run_benchmark(rna_only, "protein", verbose=False)
    with pytest.raises(ValueError, match="layer"):
        run_benchmark(rna_only, "protein", layer="counts", verbose=False)
    with pytest.raises(ValueError, match="needs an AnnData"):
        run_benchmark(rna_only, "reconstruction", verbose=False)
