import shutil
import sys

import pytest

import scssl

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError  # noqa: E402


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """hf_hub_download served from a local folder laid out like TillR/sc_pretrained."""
    remote = tmp_path / "remote"
    (remote / "Pretrained Models").mkdir(parents=True)
    (remote / "Finetuned Models").mkdir()
    (remote / "Pretrained Models" / "RandomMask.ckpt").write_bytes(b"weights")
    (remote / "Finetuned Models" / "Classifier.ckpt").write_bytes(b"clf")
    (remote / "var.parquet").write_bytes(b"genes")
    calls = []

    def hf_hub_download(repo_id, filename, cache_dir, revision=None):
        calls.append((repo_id, filename, cache_dir, revision))
        cached = tmp_path / "served" / filename
        if cached.exists():
            return str(cached)
        source = remote / filename
        if not remote.exists():
            raise LocalEntryNotFoundError("offline and not in the cache")
        if not source.exists():
            raise EntryNotFoundError(f"{filename} not found")
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, cached)
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return remote, calls


def test_download_resolves_folders_and_uses_the_cache(fake_hub, tmp_path):
    remote, calls = fake_hub
    files = scssl.datasets.ssl_in_scg_weights("RandomMask.ckpt", cache_dir=tmp_path / "c")
    assert files.checkpoint.read_bytes() == b"weights"
    assert files.genes.read_bytes() == b"genes"
    assert calls[0] == (
        "TillR/sc_pretrained",
        "Pretrained Models/RandomMask.ckpt",
        str(tmp_path / "c"),
        None,
    )
    # a bare name is looked up in "Finetuned Models" after "Pretrained Models"
    clf = scssl.datasets.ssl_in_scg_weights("Classifier.ckpt", cache_dir=tmp_path / "c")
    assert clf.checkpoint.read_bytes() == b"clf"
    shutil.rmtree(remote)  # offline now: cached files are still served
    again = scssl.datasets.ssl_in_scg_weights(
        "Pretrained Models/RandomMask.ckpt", cache_dir=tmp_path / "c"
    )
    assert again.checkpoint == files.checkpoint


def test_missing_file_and_offline_errors(fake_hub, tmp_path):
    remote, _ = fake_hub
    with pytest.raises(FileNotFoundError, match=r"has no file 'Nope\.ckpt'"):
        scssl.datasets.ssl_in_scg_weights("Nope.ckpt", cache_dir=tmp_path)
    shutil.rmtree(remote)
    with pytest.raises(ConnectionError, match="offline"):
        scssl.datasets.ssl_in_scg_weights("Other.ckpt", cache_dir=tmp_path)


def test_real_client_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(ConnectionError, match="pass their local paths"):
        scssl.datasets.ssl_in_scg_weights("Pretrained Models/x.ckpt", cache_dir=tmp_path)


def test_listing_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(ConnectionError, match="pass their local paths"):
        scssl.datasets.list_ssl_in_scg_weights()


def test_listing_keeps_errors_that_are_not_about_the_network(monkeypatch):
    def bad_name(repo_id, revision=None):
        raise ValueError("Repo id must be in the form 'repo_name' or 'namespace/repo_name'")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", bad_name)
    with pytest.raises(ValueError, match="Repo id must be"):
        scssl.datasets.list_ssl_in_scg_weights(repo_id="a/b/c")


def test_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"scssl\[hub\]"):
        scssl.datasets.ssl_in_scg_weights("x.ckpt")
