"""Batch integration: batch centring mixes batches and keeps cell types."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
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


# ------------------------------------------------------------------ batch adversary
def test_batch_adversary_losses_train_one_side_each():
    adversary = scssl.nn.BatchAdversary(n_latent=4, n_batch=3, n_hidden=8)
    z = torch.randn(10, 4, requires_grad=True)
    batch = torch.randint(0, 3, (10, 1))
    classifier, confusion = adversary(z, batch)
    assert classifier.shape == confusion.shape == (10,)
    classifier.mean().backward(retain_graph=True)
    assert z.grad is None  # the classifier's loss never reaches the encoder
    assert all(p.grad is not None for p in adversary.parameters())
    adversary.zero_grad()
    confusion.mean().backward()
    assert z.grad is not None  # the confusion loss trains only the encoder
    assert all(p.grad is None or not p.grad.any() for p in adversary.parameters())
    # Uniform predictions give the smallest confusion loss, log(n_batch).
    for layer in adversary.classifier:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    _, confusion = adversary(z, batch)
    np.testing.assert_allclose(confusion.detach().numpy(), np.log(3), rtol=1e-6)


def _within_type_mixing(embedding, batch, cell_type, k: int = 15) -> float:
    """Other-batch share among each cell's neighbours, relative to its cell type's share."""
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)[1][:, 1:]
    other = (batch[neighbours] != batch[:, None]).mean(axis=1)
    expected = np.array(
        [np.mean(batch[cell_type == t] != b) for t, b in zip(cell_type, batch, strict=True)]
    )
    keep = expected > 0
    return float(np.mean(other[keep] / expected[keep]))


@pytest.fixture
def type_specific_batches() -> ad.AnnData:
    """600 cells, 3 cell types x 2 batches; the batch changes different genes in each type
    (as a stimulation does), so no single per-batch shift removes it."""
    rng = np.random.default_rng(1)
    n_genes, n_cells = 200, 600
    type_means = rng.gamma(0.6, 3.0, size=(3, n_genes))
    response = np.ones((3, n_genes))
    for t in range(3):
        genes = rng.choice(n_genes, 40, replace=False)
        response[t, genes] = np.exp(rng.normal(0.0, 1.5, size=40))
    cell_type = rng.integers(0, 3, size=n_cells)
    batch = rng.integers(0, 2, size=n_cells)
    means = type_means[cell_type] * np.where(batch[:, None] == 1, response[cell_type], 1.0)
    counts = rng.poisson(means).astype(np.float32)
    obs = pd.DataFrame(
        {"batch": [f"b{b}" for b in batch], "cell_type": [f"t{t}" for t in cell_type]},
        index=[f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=var)


def test_batch_adversary_removes_type_specific_batch_effects(type_specific_batches):
    batch = type_specific_batches.obs["batch"].to_numpy()
    cell_type = type_specific_batches.obs["cell_type"].to_numpy()
    embeddings = {}
    for name, centring, weight in (
        ("plain", False, 0.0),
        ("centred", True, 0.0),
        ("adversarial", False, 1.0),
    ):
        adata = type_specific_batches.copy()
        scvi.settings.seed = 0
        scssl.model.SSLEncoder.setup_anndata(adata, batch_key="batch")
        model = scssl.model.SSLEncoder(
            adata,
            n_hidden=(64,),
            n_latent=8,
            dropout_rate=0.0,
            batch_centering=centring,
            batch_adversary_weight=weight,
        )
        model.train(max_epochs=30, batch_size=32, early_stopping=False, train_size=1.0)
        embeddings[name] = model.get_latent_representation()
    assert "batch_confusion_loss_train" in model.history
    mixing = {name: _within_type_mixing(z, batch, cell_type) for name, z in embeddings.items()}
    assert mixing["adversarial"] > mixing["plain"] + 0.1
    # One shift per batch cannot undo effects that differ by cell type (here it hurts).
    assert mixing["centred"] < mixing["adversarial"]
    # Cell types stay apart.
    from sklearn.neighbors import KNeighborsClassifier

    accuracy = KNeighborsClassifier(15).fit(embeddings["adversarial"], cell_type)
    assert accuracy.score(embeddings["adversarial"], cell_type) > 0.95


def test_batch_adversary_stops_early_on_the_pretext_loss(two_batches):
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    model = scssl.model.SSLEncoder(
        two_batches, n_hidden=(32,), n_latent=4, batch_centering=False, batch_adversary_weight=0.3
    )
    model.train(max_epochs=2, batch_size=64, early_stopping=True)
    assert "pretext_loss_validation" in model.history
    assert model.module.batch_adversary_weight == 0.3


def test_batch_adversary_needs_a_non_negative_weight_and_batches(two_batches):
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    with pytest.raises(ValueError, match="batch_adversary_weight"):
        scssl.model.SSLEncoder(two_batches, batch_adversary_weight=-1.0)
    one_batch = two_batches[two_batches.obs["batch"] == "b0"].copy()
    scssl.model.SSLEncoder.setup_anndata(one_batch, batch_key="batch")
    with pytest.warns(UserWarning, match="one batch") as caught:
        model = scssl.model.SSLEncoder(one_batch, batch_adversary_weight=0.3)
    assert model.module.batch_adversary_weight == 0.0
    assert next(w for w in caught if "one batch" in str(w.message)).filename == __file__


def test_adversarial_model_saves_loads_and_embeds_new_batches(two_batches, tmp_path):
    scvi.settings.seed = 0
    scssl.model.SSLEncoder.setup_anndata(two_batches, batch_key="batch")
    model = scssl.model.SSLEncoder(
        two_batches, n_hidden=(32,), n_latent=4, batch_centering=False, batch_adversary_weight=0.3
    )
    model.train(max_epochs=2, batch_size=64, early_stopping=False, train_size=1.0)
    model.save(tmp_path / "model")
    loaded = scssl.model.SSLEncoder.load(tmp_path / "model", adata=two_batches)
    assert loaded.module.batch_adversary_weight == 0.3
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5
    )
    # The encoder never reads the batch: a batch it has not seen embeds like a known one.
    query = two_batches[:50].copy()
    query.obs["batch"] = "new_lab"
    scssl.tl.embed(query, loaded)
    np.testing.assert_allclose(
        query.obsm["X_scssl"], model.get_latent_representation(two_batches[:50]), atol=1e-5
    )
