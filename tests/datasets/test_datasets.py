import numpy as np
import pytest

import scssl
from scssl.datasets import download


def test_demo_data_are_real_counts_with_labels(kang_demo):
    assert kang_demo.shape == (3000, 12246)
    assert set(kang_demo.obs["stim"]) == {"CTRL", "STIM"}
    assert kang_demo.obs["cell_type"].nunique() == 13
    values = kang_demo.X.data
    assert values.dtype == np.float32 and np.all(values == np.round(values)) and values.min() > 0


def test_kang_from_a_local_path(shared_file):
    adata = scssl.datasets.kang_ifnb_pbmc(shared_file("kang_ifnb_pbmc.h5ad"))
    assert adata.shape == (13999, 14053)
    assert {"stim", "cell_type"} <= set(adata.obs)


def test_download_fills_the_cache_once(tmp_path, monkeypatch):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"scssl" * 100)
    monkeypatch.setenv("SCSSL_CACHE_DIR", str(tmp_path / "cache"))
    path = download(source.as_uri(), "file.bin")
    assert path.read_bytes() == source.read_bytes()
    source.unlink()  # a second call is served from the cache
    assert download(source.as_uri(), "file.bin") == path


def test_offline_download_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SCSSL_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConnectionError, match="pass its local path"):
        download("http://127.0.0.1:9/kang.h5ad", "kang.h5ad", timeout=2)
    assert not (tmp_path / "kang.h5ad").exists()
