"""The label-transfer benchmark's two cross-study tasks (benchmarks/label_transfer_tasks.py)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "label_transfer_tasks.py"


@pytest.fixture
def tasks():
    spec = importlib.util.spec_from_file_location("label_transfer_tasks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("label_transfer_tasks", None)


@pytest.mark.parametrize(
    ("task", "reference_study"), [("kang2pbmc3tech", "Kang"), ("pbmc3tech2kang", "pbmc_3tech")]
)
def test_one_study_annotates_the_other(tasks, shared_file, task, reference_study):
    data_dir = shared_file("kang_ifnb_pbmc.h5ad").parent
    shared_file("pbmc_3tech.h5ad")
    adata, labels_key, batch_key, folds = tasks.load_task(task, data_dir, None, 0)
    [(name, reference)] = folds
    assert reference.tolist() == (adata.obs["study"] == reference_study).tolist()
    labels = adata.obs[labels_key].astype(str).to_numpy()
    # every query type is a reference type: no method is scored on a type it cannot predict
    assert set(labels[~reference]) <= set(labels[reference])
    assert "HSC" not in labels
    assert ("Eryth" in labels) == (task == "kang2pbmc3tech")
    assert adata.obs[batch_key].nunique() == 5
    assert name.split("->")[0] == reference_study
