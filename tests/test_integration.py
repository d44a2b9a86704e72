"""Batch integration: batch centring mixes batches and keeps cell types."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

import scssl


@pytest.fixture
def two_batches() -> ad.AnnData:
    """400 cells, 2 cell types x 2 batches; the batch rescales every gene (strong batch effect)."""
    rng = np.random.default_rng(0)
    n_genes = 200
    type_means = rng.gamma(0.6, 3.0, size=(2, n_genes))
    batch_factor = np.exp(rng.normal(0.0, 1.0, size=(2, n_genes)))
    cell_type = rng.integers(0, 2, size=400)
    batch = np.repeat([0, 1], 200)
    means = type_means[cell_type] * batch_factor[batch]
    counts = rng.poisson(means).astype(np.float32)
    obs = pd.DataFrame(
        {"batch": [f"b{b}" for b in batch], "cell_type": [f"t{t}" for t in cell_type]},
        index=[f"c{i}" for i in range(400)],
    )
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=var)


def _other_batch_share(embedding: np.ndarray, batch: np.ndarray, k: int = 15) -> float:
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)[1][:, 1:]
    return float((batch[neighbours] != batch[:, None]).mean())


def _train(adata: ad.AnnData, batch_centering: bool) -> scssl.model.SSLEncoder:
    scvi.settings.seed = 0
    scssl.model.SSLEncoder.setup_anndata(adata, batch_key="batch")
    model = scssl.model.SSLEncoder(
        adata, n_hidden=(64,), n_latent=8, batch_centering=batch_centering, dropout_rate=0.0
    )
    model.train(max_epochs=15, batch_size=32, early_stopping=False, train_size=1.0)
    return model


def test_batch_centring_mixes_batches(two_batches):
    batch = two_batches.obs["batch"].to_numpy()
    cell_type = two_batches.obs["cell_type"].to_numpy()
    plain = _train(two_batches.copy(), batch_centering=False)
    conditioned = _train(two_batches, batch_centering=True)
    assert conditioned.module.batch_centering and not plain.module.batch_centering
    z_plain = plain.get_latent_representation()
    z_conditioned = conditioned.get_latent_representation()
    mixing_plain = _other_batch_share(z_plain, batch)
    mixing_conditioned = _other_batch_share(z_conditioned, batch)
    assert mixing_conditioned > mixing_plain + 0.1
    # Cell types stay apart: neighbours of the same type.
    assert _other_batch_share(z_conditioned, cell_type) < 0.1


def test_new_batches_are_centred_on_their_own_mean(two_batches, tmp_path):
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    model = scssl.model.SSLEncoder(two_batches, n_hidden=(16,), n_latent=4)
    assert model.module.batch_centering
    means = model.module.batch_means.numpy()
    assert means.shape == (2, two_batches.n_vars) and not np.allclose(means[0], means[1])
    # A known batch embeds as in training, also when given as another AnnData.
    np.testing.assert_allclose(
        model.get_latent_representation(two_batches[:50].copy()),
        model.get_latent_representation()[:50],
        atol=1e-5,
    )
    # A new batch equal to batch b1 is centred on its own mean: the same embedding as b1.
    query = two_batches[two_batches.obs["batch"] == "b1"].copy()
    query.obs["batch"] = "new"
    np.testing.assert_allclose(
        model.get_latent_representation(query),
        model.get_latent_representation()[two_batches.obs["batch"].to_numpy() == "b1"],
        atol=1e-4,
    )
    del query.obs["batch"]
    with pytest.warns(UserWarning, match="one new batch"):
        assert model.get_latent_representation(query).shape == (query.n_obs, 4)
    model.save(tmp_path / "model")
    loaded = scssl.model.SSLEncoder.load(tmp_path / "model", adata=two_batches)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), model.get_latent_representation()
    )


def test_centring_is_applied_to_sparse_and_dense_alike(two_batches):
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    model = scssl.model.SSLEncoder(two_batches, n_hidden=(16,), n_latent=4)
    dense = two_batches.copy()
    dense.X = dense.X.toarray()
    np.testing.assert_allclose(
        model.get_latent_representation(dense), model.get_latent_representation(), atol=1e-5
    )


def test_contrastive_pretexts_train_with_batch_centring(two_batches):
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    model = scssl.model.SSLEncoder(
        two_batches, pretext="byol", n_hidden=(16,), n_latent=4, projection_hidden=16
    )
    assert model.module.batch_centering
    model.train(max_epochs=1, batch_size=64, train_size=1.0, early_stopping=False)
    assert np.isfinite(model.get_latent_representation()).all()
