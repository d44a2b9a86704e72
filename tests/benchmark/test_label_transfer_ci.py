"""benchmarks/label_transfer_ci.py on a cache of made-up predictions for the real pbmc_3tech."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scssl.benchmark import macro_f1

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "label_transfer_ci.py"


@pytest.fixture
def ci_script(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("label_transfer_ci", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("label_transfer", None)


def _cache_file(script, group: str, seed: int, cache: Path) -> Path:
    """Where the benchmark caches a group's pbmc_3tech rows with its default settings."""
    settings = SimpleNamespace(
        pretrain_time="00:00:10:00",
        scvi_epochs=None,
        scanvi_epochs=None,
        seed=seed,
        max_cells=None,
        genes=None,
        cache=str(cache),
    )
    return script.label_transfer._cache_path(group, "pbmc3tech", settings)


def _write_cache(script, cache: Path, data_dir: Path) -> None:
    """ssl_finetuned nearly right, pca_knn often wrong (seeds 0 and 1), scvi_knn seed 0 only."""
    adata, key, _, folds = script.label_transfer_tasks.load_task("pbmc3tech", data_dir, None, 0)
    labels = adata.obs[key].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    for seed, groups in ((0, ("ssl", "pca", "scvi", "logreg")), (1, ("ssl", "pca", "logreg"))):
        for group in groups:
            method, error = {
                "ssl": ("ssl_finetuned", 0.05),
                "pca": ("pca_knn", 0.3),
                "scvi": ("scvi_knn", 0.2),
                "logreg": ("logreg", 0.1),
            }[group]
            rows = []
            for fold, ref in folds:
                truth = labels[~ref]
                wrong = rng.random(len(truth)) < error
                predicted = np.where(wrong, rng.permutation(truth), truth)
                row = {"task": "pbmc3tech", "fold": fold, "method": method, "n_genes": 1767}
                rows.append({**row, "_predicted": predicted.tolist()})
                if group == "ssl":  # the same predictions under a second name
                    rows.append({**rows[-1], "method": "ssl_linear_probe"})
            if group == "logreg":
                rows = rows[1:]  # one fold missing: left out
            path = _cache_file(script, group, seed, cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows))


def test_label_transfer_ci_on_cached_predictions(ci_script, shared_file, tmp_path):
    data_dir = shared_file("pbmc_3tech.h5ad").parent
    cache = tmp_path / "cache"
    _write_cache(ci_script, cache, data_dir)
    out = tmp_path / "ci"
    common = ["--task", "pbmc3tech", "--data-dir", str(data_dir), "--cache", str(cache)]
    common += ["--results", str(tmp_path)]
    ci_script.main([*common, "--seeds", "0", "1", "--resamples", "200", "--out", str(out)])
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["left_out"] == ["logreg", "scvi_knn"]
    twin, against_pca = payload["comparisons"]
    assert twin["against"] == "ssl_linear_probe" and against_pca["against"] == "pca_knn"
    assert twin["ratio_95"] == [1.0, 1.0] and twin["difference_95"] == [0.0, 0.0]
    # the observed score is the tables' mean over folds and seeds
    adata, key, _, folds = ci_script.label_transfer_tasks.load_task("pbmc3tech", data_dir, None, 0)
    labels = adata.obs[key].astype(str).to_numpy()
    scores = []
    for seed in (0, 1):
        path = _cache_file(ci_script, "pca", seed, cache)
        for row, (_, ref) in zip(json.loads(path.read_text()), folds, strict=True):
            scores.append(macro_f1(labels[~ref], row["_predicted"]))
    assert payload["observed"]["pca_knn"] == pytest.approx(np.mean(scores))
    low, high = against_pca["ratio_95"]
    assert against_pca["ratio"] > 1 and 1 < low < high
    assert against_pca["share_ratio_at_least_1"] == 1.0
    assert set(against_pca["per_fold"]) == {"->3pv1", "->3pv2", "->5p"}
    text = out.with_suffix(".md").read_text()
    assert "PCA-50 (1,767 genes) + kNN" in text and "left out: logreg, scvi_knn" in text
    with pytest.raises(SystemExit, match="No predictions of ssl_finetuned"):
        ci_script.main([*common, "--seeds", "0", "2", "--out", str(out)])
    # the predictions kept beside the results give the same answer without the cache
    shutil.rmtree(cache)
    again = tmp_path / "again"
    saved = ["--seeds", "0", "1", "--resamples", "200", "--saved", "--out", str(again)]
    ci_script.main([*common, *saved])
    assert json.loads(again.with_suffix(".json").read_text())["comparisons"] == [twin, against_pca]
    # a rerun of one group replaces its kept rows and keeps the other groups' saved ones
    for seed in (0, 1):
        path = _cache_file(ci_script, "ssl", seed, cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"task": "pbmc3tech", "fold": fold, "method": "ssl_finetuned", "n_genes": 1767}
            | {"_predicted": labels[~ref].tolist()}
            for fold, ref in folds
        ]
        path.write_text(json.dumps(rows))
    rerun = tmp_path / "rerun"
    ci_script.main([*common, "--seeds", "0", "1", "--resamples", "200", "--out", str(rerun)])
    result = json.loads(rerun.with_suffix(".json").read_text())
    assert result["observed"]["ssl_finetuned"] == 1.0
    assert result["observed"]["pca_knn"] == payload["observed"]["pca_knn"]
    assert "ssl_linear_probe" in result["observed"]
