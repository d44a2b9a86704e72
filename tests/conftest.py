from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi

import scssl

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_file():
    """Path of a file of ../shared/data; skips the test with the reason when it is absent."""

    def find(name: str) -> Path:
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip(f"{path} is absent (../shared/data exists only in the dev checkout)")
        return path

    return find


@pytest.fixture(scope="session")
def kang_demo() -> ad.AnnData:
    """The real Kang subsample shipped with scssl (3,000 cells)."""
    return scssl.datasets.kang_ifnb_pbmc_demo()


@pytest.fixture
def small_kang(kang_demo) -> ad.AnnData:
    """600 real Kang cells, a fresh copy per test."""
    return kang_demo[:600].copy()


@pytest.fixture
def kang_top_genes(kang_demo) -> ad.AnnData:
    """400 real Kang cells x their 2,000 most-counted genes (fast pretext training)."""
    counts = np.asarray(kang_demo.X.sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-counts)[:2000])
    return kang_demo[:400, genes].copy()


@pytest.fixture
def synthetic_counts() -> ad.AnnData:
    """200 cells x 300 genes of negative-binomial counts in two batches."""
    rng = np.random.default_rng(0)
    means = rng.gamma(0.5, 2.0, size=300)
    counts = rng.negative_binomial(2, 2 / (2 + means), size=(200, 300)).astype(np.float32)
    obs = pd.DataFrame(
        {"batch": np.repeat(["a", "b"], 100), "cell_type": rng.choice(["x", "y"], 200)},
        index=[f"cell{i}" for i in range(200)],
    )
    var = pd.DataFrame(index=[f"GENE{i}" for i in range(300)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


@pytest.fixture(scope="session")
def trained_model(kang_demo):
    """An SSLEncoder trained briefly on 600 real cells (shared by read-only tests)."""
    scvi.settings.seed = 0
    adata = kang_demo[:600].copy()
    scssl.model.SSLEncoder.setup_anndata(adata)
    model = scssl.model.SSLEncoder(adata, n_hidden=(128, 64), n_latent=16)
    model.train(max_epochs=3, enable_progress_bar=False)
    return model
