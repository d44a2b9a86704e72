"""benchmarks/label_transfer.py --merge: cached groups join (or, with --replace, replace) rows."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def label_transfer(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        "label_transfer", BENCHMARKS / "label_transfer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("label_transfer_tasks", None)


@pytest.mark.parametrize("replace", [False, True])
def test_merge_adds_or_replaces_cached_rows(label_transfer, tmp_path, monkeypatch, replace):
    out = tmp_path / "label_transfer_pbmc3tech"
    shutil.copy(BENCHMARKS / "results" / "label_transfer_pbmc3tech.json", out.with_suffix(".json"))
    before = json.loads(out.with_suffix(".json").read_text())["rows"]
    rerun = [{**r, "macro_f1": 0.5} for r in before if r["method"] == "ssl_finetuned"]
    cache = tmp_path / "cache"
    settings = SimpleNamespace(
        pretrain_time="00:00:10:00", scvi_epochs=None, scanvi_epochs=None, seed=0
    )
    settings.__dict__.update(max_cells=None, genes=None, cache=str(cache))
    path = label_transfer._cache_path("ssl", "pbmc3tech", settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rerun))
    argv = ["label_transfer.py", "--merge", "--tasks", "pbmc3tech", "--groups", "ssl"]
    argv += ["--out", str(out), "--cache", str(cache)] + (["--replace"] if replace else [])
    monkeypatch.setattr(sys, "argv", argv)
    label_transfer.main()
    after = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert len(after) == len(before)
    finetuned = [r["macro_f1"] for r in after if r["method"] == "ssl_finetuned"]
    old = [r["macro_f1"] for r in before if r["method"] == "ssl_finetuned"]
    assert finetuned == ([0.5] * 3 if replace else old)
    others = [r for r in after if r["method"] != "ssl_finetuned"]
    assert others == [r for r in before if r["method"] != "ssl_finetuned"]
    assert out.with_suffix(".md").exists()


def test_merge_warns_about_rows_of_other_code(label_transfer, capsys):
    current = label_transfer.code_version()
    label_transfer.warn_other_code([{"code": current}], "/tmp/cache")
    assert capsys.readouterr().out == ""
    label_transfer.warn_other_code([{"code": current}, {"code": "0123abc"}, {}], "/tmp/cache")
    printed = capsys.readouterr().out
    assert "0123abc, unrecorded" in printed and "delete /tmp/cache" in printed


def test_code_version_tells_uncommitted_states_apart(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "src").mkdir()
    shutil.copy(BENCHMARKS / "label_transfer.py", repo / "benchmarks" / "label_transfer.py")
    (repo / "src" / "lib.py").write_text("x = 1\n")

    def git(*arguments):
        subprocess.run(["git", "-C", str(repo), *arguments], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    git(*identity, "commit", "-qm", "start")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        "label_transfer_copy", repo / "benchmarks" / "label_transfer.py"
    )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("label_transfer_tasks", None)
    clean = module.code_version()
    assert "+" not in clean and clean != "unknown"
    (repo / "src" / "lib.py").write_text("x = 2\n")
    first = module.code_version()
    (repo / "src" / "lib.py").write_text("x = 3\n")
    second = module.code_version()
    (repo / "src" / "new file.py").write_text("y = 1\n")  # untracked files count too
    third = module.code_version()
    (repo / "src" / "new file.py").write_text("y = 2\n")
    fourth = module.code_version()
    assert first.startswith(clean + "+changes-")
    assert len({first, second, third, fourth}) == 4
