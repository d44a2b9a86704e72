"""TileDB-SOMA datamodule on a small experiment written from the Kang demo data."""

import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import scvi
import torch

import scssl

soma = pytest.importorskip("tiledbsoma", reason="pip install 'scssl[soma]'")
pytest.importorskip("tiledbsoma_ml", reason="pip install 'scssl[soma]'")
import tiledbsoma.io  # noqa: E402

from scssl.data import SOMADataModule, census_datamodule  # noqa: E402


@pytest.fixture(scope="module")
def kang_soma(tmp_path_factory, kang_demo):
    adata = kang_demo[::5].copy()  # 600 cells, control and stimulated
    uri = str(tmp_path_factory.mktemp("soma") / "kang")
    tiledbsoma.io.from_anndata(uri, adata, measurement_name="RNA")  # soma_joinid = row
    return uri, adata


def test_soma_datamodule_reads_the_right_cells_and_genes(kang_soma):
    uri, adata = kang_soma
    stim = np.flatnonzero(adata.obs["stim"].to_numpy() == "STIM")
    dm = SOMADataModule(
        uri,
        layer="data",
        obs_value_filter="stim == 'STIM'",
        batch_key="cell_type",
        batch_size=50,
        train_size=0.8,
        shuffle_chunk_size=16,
        io_batch_size=128,
    )
    assert dm.n_obs == len(stim) and dm.n_vars == adata.n_vars
    assert list(dm.var.index) == list(adata.var_names)
    assert dm.batch_categories == sorted(adata.obs["cell_type"][stim].astype(str).unique())
    dm.setup("fit")
    seen = []
    counts = sp.csr_matrix(adata.X)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            x, ids = batch["X"], batch["soma_joinid"].numpy()
            assert x.layout == torch.sparse_csr and x.shape == (len(ids), adata.n_vars)
            np.testing.assert_array_equal(x.to_dense().numpy(), counts[ids].toarray())
            codes = batch["batch"].numpy().ravel()
            names = np.asarray(dm.batch_categories)[codes]
            np.testing.assert_array_equal(names, adata.obs["cell_type"].astype(str).to_numpy()[ids])
            seen.append(ids)
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), stim)  # every selected cell exactly once, no others

    example = dm.example_anndata(n_obs=40)
    assert example.shape == (40, adata.n_vars)
    assert list(example.obs["cell_type"].cat.categories) == dm.batch_categories
    np.testing.assert_array_equal(example.X.toarray(), counts[stim[:40]].toarray())


def test_train_on_soma_datamodule(kang_soma):
    uri, adata = kang_soma
    scvi.settings.seed = 0
    dm = SOMADataModule(uri, layer="data", batch_size=100, shuffle_chunk_size=16, io_batch_size=256)
    example = dm.example_anndata()
    scssl.model.SSLEncoder.setup_anndata(example)
    model = scssl.model.SSLEncoder(example, n_hidden=(32,), n_latent=8)
    model.train(datamodule=dm, max_epochs=2, enable_progress_bar=False)
    assert len(model.history["train_loss"]) == 2
    z = model.get_latent_representation(adata)
    assert z.shape == (600, 8) and np.isfinite(z).all()


def test_soma_errors_and_census_call(kang_soma, monkeypatch):
    uri, _ = kang_soma
    with pytest.raises(KeyError, match="layer='raw'"):
        SOMADataModule(uri)  # from_anndata names the layer "data"
    with pytest.raises(KeyError, match="measurement_name"):
        SOMADataModule(uri, measurement_name="ATAC", layer="data")
    with pytest.raises(ValueError, match="no cells"):
        SOMADataModule(uri, layer="data", obs_value_filter="stim == 'nothing'")
    stim = SOMADataModule(uri, layer="data", obs_value_filter="stim == 'STIM'")
    control = np.setdiff1d(np.arange(600), stim.query.obs_joinids().to_numpy())
    with pytest.raises(
        ValueError, match=rf"{len(control)} of the obs_joinids .*e\.g\. {control[0]}"
    ):
        stim.to_anndata(control)
    monkeypatch.setitem(sys.modules, "cellxgene_census", None)  # not installed
    with pytest.raises(ImportError, match="cellxgene_census is needed to open the CELLxGENE"):
        census_datamodule(genes=["NOC2L"])

    # census_datamodule is one call; check its query with a stand-in census holding our data
    # (the real census needs the network).
    opened = {}

    def open_soma(census_version):
        opened["version"] = census_version
        collection = soma.open(uri)
        return {"census_data": {"homo_sapiens": collection}}

    fake = types.SimpleNamespace(open_soma=open_soma)
    monkeypatch.setitem(sys.modules, "cellxgene_census", fake)
    with pytest.raises(KeyError, match="layer='raw'"):
        census_datamodule(genes=["NOC2L"])  # the census layer is "raw"; ours is "data"
    assert opened["version"] == "2023-05-15"
