"""Pretraining on datasets with different genes: unmeasured genes leave the loss."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import scssl
from scssl.data import MEASURED_GENES_KEY, concat_datasets


@pytest.fixture
def union(kang_demo):
    """Real Kang cells as two datasets of overlapping 300-gene panels."""
    first = kang_demo[:200, :300].copy()
    first.obs["batch"] = np.where(np.arange(200) < 100, "ctrl", "stim")
    second = kang_demo[200:350, 150:450].copy()
    return concat_datasets({"a": first, "b": second}, batch_key="batch")


def _encoder(adata, **kwargs):
    scvi.settings.seed = 0
    scssl.model.SSLEncoder.setup_anndata(adata, batch_key="batch")
    return scssl.model.SSLEncoder(adata, n_hidden=(32,), n_latent=8, **kwargs)


def test_the_module_holds_each_batch_s_measured_genes(union):
    model = _encoder(union)
    assert model.init_params["mask_unmeasured_genes"] is True
    expected = union.varm[MEASURED_GENES_KEY][["a:ctrl", "a:stim", "b"]].to_numpy().T
    np.testing.assert_array_equal(model.module.measured_genes.numpy(), expected)


def test_unmeasured_genes_carry_no_loss_weight(union):
    model = _encoder(union, gene_sample_size=None)
    module = model.module.train()
    x = torch.as_tensor(union.X[140:260].toarray())
    codes = union.obs["batch"].cat.codes.to_numpy()[140:260].astype(np.int64)
    batches = torch.as_tensor(codes).view(-1, 1)
    weight = module._masked_inference(x, module.normalize(x), batches)["loss_weight"]
    measured = model.module.measured_genes[batches.view(-1)]
    assert weight[measured == 0].abs().sum() == 0
    assert (weight[measured == 1] > 0).any()
    unmasked = _encoder(union, gene_sample_size=None, mask_unmeasured_genes=False).module.train()
    torch.manual_seed(0)
    weight = unmasked._masked_inference(x, unmasked.normalize(x), batches)["loss_weight"]
    assert (weight[measured == 0] > 0).any()  # without the mask the zero-fill is a target


def test_centering_leaves_unmeasured_genes_at_zero(union):
    module = _encoder(union).module
    deltas = module.batch_deltas()
    assert deltas[module.measured_genes == 0].abs().max() == 0
    # a gene's reference mean covers the cells that measured it: gene 0 only in dataset a
    x_norm = module.normalize(torch.as_tensor(union.X[:200].toarray()))
    np.testing.assert_allclose(
        module.reference_mean[0].item(), x_norm[:, 0].mean().item(), rtol=1e-5
    )


def test_training_saving_and_loading_keep_the_table(union, tmp_path):
    model = _encoder(union)
    model.train(max_epochs=2, enable_progress_bar=False)
    model.save(tmp_path / "m")
    loaded = scssl.model.SSLEncoder.load(tmp_path / "m")  # placeholder data, no table
    torch.testing.assert_close(loaded.module.measured_genes, model.module.measured_genes)
    np.testing.assert_allclose(
        loaded.get_latent_representation(union), model.get_latent_representation(union), atol=1e-5
    )
    classifier = scssl.model.SSLClassifier.from_encoder(model, union, "dataset")
    torch.testing.assert_close(classifier.module.measured_genes, model.module.measured_genes)


def test_data_without_a_table_train_as_before(small_kang):
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    model = scssl.model.SSLEncoder(small_kang, n_hidden=(32,), n_latent=8)
    assert model.init_params["mask_unmeasured_genes"] is False
    assert not hasattr(model.module, "measured_genes")


def test_a_table_needs_the_batch_key_that_names_its_columns(union):
    scssl.model.SSLEncoder.setup_anndata(union)
    with pytest.raises(ValueError, match="set up without a batch_key"):
        scssl.model.SSLEncoder(union, n_hidden=(32,), n_latent=8)


def test_a_table_that_does_not_name_the_batches_is_refused(union):
    union.obs["other"] = np.where(np.arange(union.n_obs) % 2, "x", "y")
    scssl.model.SSLEncoder.setup_anndata(union, batch_key="other")
    with pytest.raises(ValueError, match="no column for the batches"):
        scssl.model.SSLEncoder(union, n_hidden=(32,), n_latent=8)


def test_fine_tuning_on_one_dataset_keeps_the_encoder_s_batches(union, kang_demo):
    encoder = _encoder(union)
    encoder.train(max_epochs=2, enable_progress_bar=False)
    mine = kang_demo[:200, :250].copy()  # dataset "a" alone, as a user holds it, fewer genes
    mine.obs["batch"] = np.where(np.arange(200) < 100, "a:ctrl", "a:stim")
    before = mine.obs.copy()
    classifier = scssl.model.SSLClassifier.from_encoder(encoder, mine, "cell_type")
    module = classifier.module
    assert module.n_batch_covariate == encoder.module.n_batch_covariate == 3
    assert module.adversary_batches.tolist() == [True, True, False]
    torch.testing.assert_close(module.decoder[0].weight, encoder.module.decoder[0].weight)
    # batch b has no cells here: its cells would be centred as the encoder centred them
    torch.testing.assert_close(module.batch_deltas()[2], encoder.module.batch_deltas()[2])
    # genes of the encoder missing from these cells leave the loss; b keeps the encoder's row
    found = np.isin(union.var_names, mine.var_names)
    np.testing.assert_array_equal(module.measured_genes[0].numpy(), found)
    torch.testing.assert_close(module.measured_genes[2], encoder.module.measured_genes[2])
    pd.testing.assert_frame_equal(mine.obs, before)  # the user's data unchanged
    classifier.train(max_epochs=2, enable_progress_bar=False)
    assert len(classifier.predict()) == 200


def test_cells_of_batches_the_encoder_does_not_know_get_a_clear_error(union, kang_demo):
    encoder = _encoder(union)
    encoder.train(max_epochs=1, enable_progress_bar=False)
    mine = kang_demo[:200, :300].copy()
    mine.obs["batch"] = np.where(np.arange(200) < 100, "ctrl", "stim")
    with pytest.raises(ValueError, match="'<dataset>:<batch>'"):
        scssl.model.SSLClassifier.from_encoder(encoder, mine, "cell_type")


def test_as_many_unknown_batches_as_the_encoder_s_get_a_warning(union, kang_demo):
    encoder = _encoder(union)
    encoder.train(max_epochs=1, enable_progress_bar=False)
    mine = kang_demo[:300, :300].copy()
    mine.obs["batch"] = np.array(["x", "a:stim", "b"])[np.arange(300) % 3]  # x is new
    with pytest.warns(UserWarning, match=r"not pretrained on.*\{'x': 'a:ctrl'\}") as record:
        classifier = scssl.model.SSLClassifier.from_encoder(encoder, mine, "cell_type")
    assert record[0].filename == __file__  # the warning points at the user's call
    state = classifier.adata_manager.get_state_registry("batch")
    assert list(state.categorical_mapping) == ["x", "a:stim", "b"]  # known names keep codes
    torch.testing.assert_close(
        classifier.module.decoder[0].weight, encoder.module.decoder[0].weight
    )
    mine.obs["batch"] = np.array(["a:ctrl", "a:stim", "b"])[np.arange(300) % 3]  # its own names
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not pretrained on.*")
        scssl.model.SSLClassifier.from_encoder(encoder, mine, "cell_type")
