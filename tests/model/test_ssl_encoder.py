import numpy as np
import pytest
import scipy.sparse as sp
import scvi
import torch

import scssl
from scssl.benchmark import knn_transfer, macro_f1
from scssl.model import SSLEncoder


def _model(adata, **kwargs):
    SSLEncoder.setup_anndata(adata)
    return SSLEncoder(adata, n_hidden=(128, 64), n_latent=16, **kwargs)


def test_study_defaults(small_kang):
    SSLEncoder.setup_anndata(small_kang)
    model = SSLEncoder(small_kang)
    sizes = [m.out_features for m in model.module.encoder if hasattr(m, "out_features")]
    assert sizes == [512, 512, 256, 256, 64]
    decoder_sizes = [m.out_features for m in model.module.decoder if hasattr(m, "out_features")]
    assert decoder_sizes == [256, 256, 512, 512, small_kang.n_vars]
    assert model.module.masking.rate == 0.5
    assert not any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.module.modules()
    )


def test_latent_and_reconstruction_shapes(trained_model):
    latent = trained_model.get_latent_representation()
    assert latent.shape == (600, 16) and latent.dtype == np.float32
    assert trained_model.get_latent_representation(indices=[5, 2]).shape == (2, 16)
    recon = trained_model.get_reconstructed_expression(indices=np.arange(10))
    assert recon.shape == (10, trained_model.adata.n_vars)
    assert list(recon.columns[:3]) == list(trained_model.adata.var_names[:3])


def test_same_seed_gives_the_same_embedding(kang_demo):
    latents = []
    for _ in range(2):
        scvi.settings.seed = 7
        adata = kang_demo[:300].copy()
        model = _model(adata)
        model.train(max_epochs=2, enable_progress_bar=False)
        latents.append(model.get_latent_representation())
    np.testing.assert_array_equal(latents[0], latents[1])


def test_embedding_does_not_depend_on_the_minibatch(trained_model):
    full = trained_model.get_latent_representation(batch_size=256)
    alone = trained_model.get_latent_representation(indices=[17], batch_size=1)
    reordered = trained_model.get_latent_representation(indices=np.arange(600)[::-1], batch_size=7)
    np.testing.assert_allclose(alone[0], full[17], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reordered[::-1], full, rtol=1e-6, atol=1e-6)


def test_save_load_round_trip_is_exact(trained_model, tmp_path):
    trained_model.save(tmp_path / "model")
    adata = trained_model.adata.copy()
    loaded = SSLEncoder.load(tmp_path / "model", adata=adata)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), trained_model.get_latent_representation()
    )
    assert loaded.gene_vocabulary == trained_model.gene_vocabulary
    assert loaded.module.pretext == "random_mask" and loaded.is_trained


def test_training_improves_validation_loss_and_label_transfer(kang_demo):
    scvi.settings.seed = 0
    adata = kang_demo.copy()
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata)  # the study's architecture
    reference = (adata.obs["stim"] == "CTRL").to_numpy()
    labels = adata.obs["cell_type"].to_numpy()

    def transfer_f1():
        z = model.get_latent_representation()
        predicted, _ = knn_transfer(z[reference], labels[reference], z[~reference])
        return macro_f1(labels[~reference], predicted)

    before = transfer_f1()
    model.train(max_epochs=30, enable_progress_bar=False)  # the default batch size (512)
    losses = model.history["validation_loss"]["validation_loss"].to_numpy()
    after = transfer_f1()
    assert losses[-1] < losses[0]
    assert after > before + 0.15, (before, after)


def test_query_with_reordered_missing_and_extra_genes(trained_model):
    adata = trained_model.adata
    reference = trained_model.get_latent_representation()
    shuffled = adata[:, np.random.default_rng(0).permutation(adata.n_vars)].copy()
    np.testing.assert_allclose(
        trained_model.get_latent_representation(shuffled), reference, rtol=1e-5, atol=1e-6
    )
    # drop 10% of genes, add 5 unknown ones: same as zeroing those genes
    keep = np.ones(adata.n_vars, dtype=bool)
    keep[::10] = False
    query = adata[:, keep].copy()
    extra = sp.random(query.n_obs, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    extra.data = np.ceil(extra.data * 5)
    import anndata as ad

    query = ad.concat(
        [
            query,
            ad.AnnData(
                extra,
                obs=query.obs[[]],
                var=__import__("pandas").DataFrame(index=[f"NEW{i}" for i in range(5)]),
            ),
        ],
        axis=1,
        merge="first",
    )
    zeroed = adata.copy()
    zeroed.X = adata.X.multiply(keep[None, :].astype(np.float32)).tocsr()
    np.testing.assert_allclose(
        trained_model.get_latent_representation(query),
        trained_model.get_latent_representation(zeroed),
        rtol=1e-5,
        atol=1e-5,
    )


def test_prepare_query_and_load_query_data(trained_model, tmp_path):
    adata = trained_model.adata
    query = adata[:50, ::-1].copy()
    aligned = SSLEncoder.prepare_query_anndata(query, trained_model)
    assert list(aligned.var_names) == list(adata.var_names)
    assert aligned.uns["scssl_alignment"]["n_matched"] == adata.n_vars
    assert list(query.var_names) == list(adata.var_names[::-1])  # input untouched
    trained_model.save(tmp_path / "ref")
    for reference in (trained_model, tmp_path / "ref"):
        query_model = SSLEncoder.load_query_data(query, reference)
        np.testing.assert_allclose(
            query_model.get_latent_representation(),
            trained_model.get_latent_representation(indices=np.arange(50)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_too_few_shared_genes_are_refused(trained_model):
    query = trained_model.adata[:, :100].copy()
    with pytest.raises(ValueError, match=r"Only 100 of \d+ model genes"):
        trained_model.get_latent_representation(query)


def test_sparse_minibatches_reach_the_first_layer_and_nothing_densifies_the_matrix(
    small_kang, monkeypatch
):
    trained_model = _model(small_kang)
    layouts = []
    hook = trained_model.module.encoder[0].register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].layout)
    )

    def refuse(*args, **kwargs):
        raise AssertionError("the full matrix was densified")

    monkeypatch.setattr(sp.csr_matrix, "toarray", refuse)
    monkeypatch.setattr(sp.csr_matrix, "todense", refuse)
    try:
        trained_model.get_latent_representation()
        trained_model.train(max_epochs=1, enable_progress_bar=False, early_stopping=False)
    finally:
        hook.remove()
    assert layouts and all(layout == torch.sparse_csr for layout in layouts)


def test_batch_key_conditions_the_decoder(synthetic_counts):
    SSLEncoder.setup_anndata(synthetic_counts, batch_key="batch")
    model = SSLEncoder(synthetic_counts, n_hidden=(32,), n_latent=4)
    assert model.module.n_batch_covariate == 2
    model.train(max_epochs=1, enable_progress_bar=False, early_stopping=False)
    recon = model.get_reconstructed_expression(return_numpy=True)
    assert recon.shape == (200, 300)
    other = synthetic_counts.copy()
    other.obs["batch"] = "c"
    with pytest.raises(ValueError, match="batches the model was not trained on"):
        model.get_reconstructed_expression(other)


def test_unknown_pretext_is_refused(small_kang):
    SSLEncoder.setup_anndata(small_kang)
    with pytest.raises(ValueError, match="pretext='simclr' is not known"):
        SSLEncoder(small_kang, pretext="simclr")


def test_inverse_sd_gene_weights_follow_the_data_and_are_saved(small_kang, tmp_path):
    from scssl.module._masked import SD_FLOOR_RATIO

    model = _model(small_kang, reconstruction_gene_weights="inverse_sd")
    weight = model.module.gene_loss_weight
    x = small_kang.X.toarray()
    log1p = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    sd = log1p.std(0)
    assert weight.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert (sd == 0).sum() > 500  # genes silent in these 600 cells get the floor
    spread = torch.as_tensor(sd[sd > 0])
    floor = spread.median().item() / SD_FLOOR_RATIO  # torch's median: the lower middle value
    expected = 1 / np.maximum(sd, floor)
    np.testing.assert_allclose(weight.numpy(), expected / expected.mean(), rtol=1e-3)
    # the less a gene varies, the more its error counts, at most SD_FLOOR_RATIO times the median
    assert weight[np.argmax(sd)] < 1 < weight.max()
    assert weight.max() / weight[sd > 0].median() == pytest.approx(SD_FLOOR_RATIO, rel=1e-3)
    model.train(max_epochs=1, enable_progress_bar=False)
    model.save(tmp_path / "model")
    loaded = SSLEncoder.load(tmp_path / "model", adata=small_kang[:50].copy())  # other cells
    assert loaded.module.reconstruction_gene_weights == "inverse_sd"
    assert torch.equal(loaded.module.gene_loss_weight, weight)  # the training cells' weights
    assert "gene_loss_weight" not in _model(small_kang).module.state_dict()  # the study's loss
    # a classifier from the encoder keeps the option, its weights from its own cells
    cells = small_kang[:300].copy()
    classifier = scssl.model.SSLClassifier.from_encoder(model, cells, "cell_type")
    assert classifier.module.reconstruction_gene_weights == "inverse_sd"
    assert not torch.equal(classifier.module.gene_loss_weight, weight)


def test_gene_weights_need_a_masked_pretext(small_kang):
    SSLEncoder.setup_anndata(small_kang)
    with pytest.raises(ValueError, match="pretext='byol' does not have"):
        SSLEncoder(small_kang, pretext="byol", reconstruction_gene_weights="inverse_sd")
    with pytest.raises(ValueError, match="reconstruction_gene_weights='sd'"):
        SSLEncoder(small_kang, reconstruction_gene_weights="sd")


def test_dense_input_works(synthetic_counts):
    synthetic_counts.X = synthetic_counts.X.toarray()
    model = _model(synthetic_counts)
    model.train(max_epochs=1, enable_progress_bar=False, early_stopping=False)
    assert model.get_latent_representation().shape == (200, 16)


def test_public_api():
    assert scssl.model.SSLEncoder is SSLEncoder
    assert callable(scssl.tl.embed)
