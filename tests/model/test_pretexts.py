"""The study's pretext tasks: masks, TF programmes, BYOL, Barlow Twins, NB likelihood, gene sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import ExplainedVariance

import scssl
from scssl.benchmark import mean_squared_error, weighted_explained_variance
from scssl.data import GeneVocabulary, encode_gene_sets, encode_tf_programmes, load_gene_sets
from scssl.module import SSLModule
from scssl.nn import GeneProgrammeMask, ProgrammeToTFMask, View, barlow_twins_loss

SMALL = {"n_hidden": (32,), "n_latent": 8}


def _gmt(tmp_path, lines, name="sets.gmt"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ------------------------------------------------------------------ gene sets
def test_hallmark_ships_with_the_package():
    hallmark = load_gene_sets("hallmark")
    assert len(hallmark) == 50
    assert "HALLMARK_INTERFERON_ALPHA_RESPONSE" in hallmark
    assert "ISG15" in hallmark["HALLMARK_INTERFERON_ALPHA_RESPONSE"]


def test_gmt_problems_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_gene_sets(_gmt(tmp_path, []))
    with pytest.raises(ValueError, match="appears twice"):
        load_gene_sets(_gmt(tmp_path, ["A\tdesc\tCD3E", "A\tdesc\tCD4"]))
    with pytest.raises(ValueError, match="lists no genes"):
        load_gene_sets(_gmt(tmp_path, ["A\tdesc"]))
    with pytest.raises(FileNotFoundError):
        load_gene_sets(tmp_path / "missing.gmt")
    vocabulary = GeneVocabulary(["CD3E", "CD4", "MS4A1"])
    with pytest.raises(ValueError, match="None of the 2 genes"):
        encode_gene_sets(load_gene_sets({"X": ["FOO", "BAR"]}), vocabulary)


def test_gene_sets_match_symbols_case_insensitively():
    vocabulary = GeneVocabulary(["CD3E", "CD4", "MS4A1", "LYZ"])
    encoded = encode_gene_sets({"T": ["cd3e", "Cd4", "NOTAGENE"], "none": ["FOO"]}, vocabulary)
    assert encoded.names == ["T"]
    np.testing.assert_array_equal(encoded.members, [[True, True, False, False]])


def test_tf_programmes_need_the_tf_and_enough_targets():
    vocabulary = GeneVocabulary(["STAT1", "IRF1", "ISG15", "MX1", "IFIT1", "LYZ"])
    tf_targets = {
        "STAT1": ["IRF1", "ISG15", "MX1", "STAT1"],  # the TF itself is not its own target
        "IRF9": ["ISG15", "MX1", "IFIT1"],  # TF absent
        "IRF1": ["ISG15"],  # too few targets
    }
    encoded = encode_tf_programmes(tf_targets, vocabulary, min_targets=2)
    assert encoded.names == ["STAT1"]
    assert encoded.anchors.tolist() == [0]
    np.testing.assert_array_equal(encoded.members[0], [False, True, True, True, False, False])
    with pytest.raises(ValueError, match="No TF programme qualifies"):
        encode_tf_programmes(tf_targets, vocabulary, min_targets=10)


# ---------------------------------------------------------------- masking
def test_gene_programme_mask_hides_whole_programmes_at_the_rate():
    torch.manual_seed(0)
    n_genes = 40
    members = torch.zeros(8, n_genes, dtype=torch.bool)
    for i in range(8):
        members[i, i * 5 : i * 5 + 5] = True  # disjoint programmes of 5 genes
    masking = GeneProgrammeMask(members, rate=0.25)
    x = torch.rand(6, n_genes) + 0.1
    masked_input, mask = masking(x)
    assert masking.n_masked_programmes == 2
    hidden = mask[0]
    assert torch.equal(mask, hidden.expand_as(mask))  # the same programmes for the minibatch
    per_programme = torch.stack([hidden[m].all() for m in members])
    partially = torch.stack([hidden[m].any() & ~hidden[m].all() for m in members])
    assert int(per_programme.sum()) == 2 and not partially.any()
    assert torch.all(masked_input[:, hidden] == 0)
    share = hidden.float().mean()
    torch.testing.assert_close(masked_input[:, ~hidden], x[:, ~hidden] / (1 - share))
    sparse_input, _ = GeneProgrammeMask(members, rate=0.25)(x.to_sparse_csr())
    assert sparse_input.layout == torch.sparse_csr


def test_programme_to_tf_input_keeps_only_the_targets_and_hides_the_tf():
    torch.manual_seed(0)
    members = torch.zeros(3, 10, dtype=torch.bool)
    members[0, [1, 2, 3]] = True
    members[1, [4, 5]] = True
    members[2, [6, 7, 8]] = True
    tf_index = torch.tensor([0, 9, 5])
    masking = ProgrammeToTFMask(members, tf_index)
    x = torch.rand(50, 10) + 0.1
    masked_input, kept, tf = masking(x)
    for cell in range(50):
        programme = int(torch.nonzero(tf_index == tf[cell])[0])
        assert torch.equal(kept[cell], members[programme])
        assert torch.equal(masked_input[cell] != 0, members[programme])
        assert masked_input[cell, tf[cell]] == 0
    assert len(set(tf.tolist())) == 3  # every programme is drawn


def test_masked_loss_ignores_visible_entries():
    torch.manual_seed(0)
    module = SSLModule(30, pretext="random_mask", n_hidden=(16,), n_latent=4, log_normalized=True)
    x = torch.rand(8, 30)
    torch.set_grad_enabled(False)
    inference = module.inference(x)
    generative = module.generative(inference["z"])
    loss = module.loss({}, inference, generative).loss
    visible = inference["loss_weight"] == 0
    changed = generative["x_hat"].clone()
    changed[visible] += 100.0
    assert module.loss({}, inference, {"x_hat": changed}).loss == pytest.approx(float(loss))
    changed[~visible] += 1.0
    assert module.loss({}, inference, {"x_hat": changed}).loss > loss
    torch.set_grad_enabled(True)


def test_programme_to_tf_loss_weights_tf_and_rest():
    members = torch.zeros(1, 6, dtype=torch.bool)
    members[0, [1, 2]] = True
    module = SSLModule(
        6,
        pretext="programme_to_tf",
        n_hidden=(8,),
        n_latent=2,
        log_normalized=True,
        programme_members=members,
        tf_index=torch.tensor([0]),
        tf_rest_weight=0.5,
    )
    weight = module.inference(torch.rand(4, 6))["loss_weight"]
    np.testing.assert_allclose(weight[0].numpy(), [1.0, 0, 0, 0.5 / 3, 0.5 / 3, 0.5 / 3])


# ------------------------------------------------------------- contrastive
def test_barlow_twins_loss_is_zero_for_identical_decorrelated_views():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(256, 16))
    z = (q - q.mean(0)) * 16.0  # orthogonal, centred columns: correlation matrix = identity
    batch_norm = torch.nn.BatchNorm1d(16, affine=False)
    assert barlow_twins_loss(z, z, batch_norm) < 0.05
    correlated = torch.randn(256, 1).repeat(1, 16) + 0.1 * torch.randn(256, 16)
    assert barlow_twins_loss(correlated, correlated, batch_norm) > 1.0  # 0.0051 * ~240 c_ij^2
    assert barlow_twins_loss(z, torch.randn(256, 16), batch_norm) > 10.0


def test_views_are_composable_and_configurable():
    torch.manual_seed(0)
    x = torch.rand(16, 50)
    assert torch.equal(View(())(x), x)
    dropped = View(("dropout",), dropout_intensity=0.5)(x)
    assert 0.3 < (dropped == 0).float().mean() < 0.7
    noisy = View(("negbin",), negbin_intensity=0.1)(x)
    assert (noisy >= x).all() and (noisy > x).any()
    with pytest.raises(ValueError, match="Unknown augmentations"):
        View(("blur",))


def test_byol_target_follows_the_online_network_by_ema(kang_top_genes):
    small_kang = kang_top_genes
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    model = scssl.model.SSLEncoder(small_kang, pretext="byol", projection_hidden=64, **SMALL)
    online_before = model.module.encoder[0].weight.detach().clone()
    target_before = model.module.target_encoder[0].weight.detach().clone()
    torch.testing.assert_close(online_before, target_before)
    model.train(max_epochs=1, batch_size=64, early_stopping=False, train_size=1.0)
    online = model.module.encoder[0].weight.detach()
    target = model.module.target_encoder[0].weight.detach()
    assert not torch.equal(target, target_before)  # the target moved ...
    assert not torch.equal(target, online)  # ... but is not a copy of the online network
    assert all(not p.requires_grad for p in model.module.target_encoder.parameters())
    # The target lies between its start and the online weights (EMA with decay 0.99).
    assert (target - target_before).norm() < (online - target_before).norm()


def test_byol_ema_update_formula():
    module = SSLModule(10, pretext="byol", n_hidden=(8,), n_latent=4, projection_hidden=16)
    with torch.no_grad():
        module.encoder[0].weight.add_(1.0)
    before = module.target_encoder[0].weight.detach().clone()
    decay = module.update_target(step=0, total_steps=None)
    assert decay == pytest.approx(0.99)
    expected = 0.99 * before + 0.01 * module.encoder[0].weight.detach()
    torch.testing.assert_close(module.target_encoder[0].weight.detach(), expected)
    module.ema_cosine = True
    assert module.update_target(step=100, total_steps=100) == pytest.approx(1.0)


# ------------------------------------------------------------ whole models
def _seeded_pretext_loss(model, adata) -> float:
    """The pretext loss on fixed cells with fixed masks/augmentations (seeded), no update."""
    x = torch.as_tensor(adata.X[:256].toarray()).to_sparse_csr()
    torch.manual_seed(123)
    model.module.train()
    with torch.no_grad():
        _, _, losses = model.module({"X": x})
    model.module.eval()
    return float(losses.loss)


@pytest.mark.parametrize(
    ("pretext", "kwargs"),
    [
        ("random_mask", {"likelihood": "nb"}),
        ("gene_programme_mask", {"gene_sets": "hallmark"}),
        ("programme_to_tf", {"gene_sets": "tf"}),
        ("byol", {"projection_hidden": 64}),
        ("barlow_twins", {"projector_sizes": (32, 32)}),
    ],
)
def test_every_pretext_trains_and_embeds(kang_top_genes, pretext, kwargs, tmp_path):
    small_kang = kang_top_genes
    if kwargs.get("gene_sets") == "tf":
        kwargs = {"gene_sets": {"STAT1": ["IRF1", "ISG15", "MX1", "IFIT3", "GBP1", "IFI6"]}}
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    torch.manual_seed(0)
    model = scssl.model.SSLEncoder(small_kang, pretext=pretext, **SMALL, **kwargs)
    before = _seeded_pretext_loss(model, small_kang)
    model.train(max_epochs=3, batch_size=64, early_stopping=False, train_size=1.0)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    assert _seeded_pretext_loss(model, small_kang) < before
    latent = model.get_latent_representation()
    assert latent.shape == (small_kang.n_obs, 8) and np.isfinite(latent).all()
    model.save(tmp_path / "model")
    loaded = scssl.model.SSLEncoder.load(tmp_path / "model", adata=small_kang)
    assert loaded.module.pretext == pretext
    assert loaded.programme_names_ == model.programme_names_
    if pretext in ("gene_programme_mask", "programme_to_tf"):
        assert (
            loaded.init_params_["non_kwargs"]["gene_sets"]
            == model.init_params_["non_kwargs"]["gene_sets"]
        )
        torch.testing.assert_close(loaded.module.masking.members, model.module.masking.members)
    np.testing.assert_array_equal(loaded.get_latent_representation(), latent)


def test_gene_sets_travel_with_the_saved_model(small_kang, tmp_path):
    gmt = _gmt(tmp_path, ["IFN\tdesc\tISG15\tMX1\tIFI6\tIFIT3", "T\tdesc\tCD3E\tCD3D"])
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    model = scssl.model.SSLEncoder(
        small_kang, pretext="gene_programme_mask", gene_sets=gmt, **SMALL
    )
    model.save(tmp_path / "model")
    gmt.unlink()  # the file is gone; the saved model keeps the sets themselves
    loaded = scssl.model.SSLEncoder.load(tmp_path / "model", adata=small_kang)
    assert loaded.programme_names_ == ["IFN", "T"]


def test_pretext_arguments_are_checked(small_kang):
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    with pytest.raises(ValueError, match="needs gene_sets"):
        scssl.model.SSLEncoder(small_kang, pretext="programme_to_tf", **SMALL)
    with pytest.raises(ValueError, match="not 'byol'"):
        scssl.model.SSLEncoder(small_kang, pretext="byol", gene_sets="hallmark", **SMALL)
    with pytest.raises(ValueError, match="needs a masked pretext"):
        scssl.model.SSLEncoder(small_kang, pretext="barlow_twins", likelihood="nb", **SMALL)
    with pytest.raises(ValueError, match="is not known"):
        scssl.model.SSLEncoder(small_kang, pretext="simclr", **SMALL)
    with pytest.raises(ValueError, match="None of the"):
        scssl.model.SSLEncoder(
            small_kang, pretext="gene_programme_mask", gene_sets={"X": ["NOTAGENE"]}, **SMALL
        )
    model = scssl.model.SSLEncoder(small_kang, pretext="byol", projection_hidden=16, **SMALL)
    with pytest.raises(ValueError, match="has no decoder"):
        model.get_reconstructed_expression()


def test_nb_reconstruction_in_counts_and_log1p(kang_top_genes):
    small_kang = kang_top_genes
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    model = scssl.model.SSLEncoder(small_kang, likelihood="nb", **SMALL)
    assert model.module.px_r.shape == (small_kang.n_vars,)
    counts = model.get_reconstructed_expression(kind="counts", return_numpy=True)
    library = np.asarray(small_kang.X.sum(axis=1)).ravel()
    np.testing.assert_allclose(counts.sum(axis=1), library, rtol=1e-4)
    log1p = model.get_reconstructed_expression(return_numpy=True)
    np.testing.assert_allclose(log1p, np.log1p(counts / library[:, None] * 1e4), atol=1e-3)
    with pytest.raises(ValueError, match="kind="):
        model.get_reconstructed_expression(kind="probabilities")


def test_nb_needs_counts(small_kang):
    adata = small_kang.copy()
    adata.X = np.log1p(adata.X.toarray())
    scssl.model.SSLEncoder.setup_anndata(adata, log_normalized=True)
    with pytest.raises(ValueError, match="likelihood='nb' models counts"):
        scssl.model.SSLEncoder(adata, likelihood="nb", **SMALL)


# ----------------------------------------------------------------- metrics
def test_weighted_explained_variance_matches_torchmetrics():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(100, 20)) * rng.uniform(0.1, 3, size=20)
    y_hat = y + rng.normal(scale=0.5, size=y.shape)
    expected = ExplainedVariance(multioutput="variance_weighted")(
        torch.tensor(y_hat), torch.tensor(y)
    )
    assert weighted_explained_variance(y, y_hat) == pytest.approx(float(expected), rel=1e-6)
    assert weighted_explained_variance(y, y) == pytest.approx(1.0)
    assert mean_squared_error(y, y_hat) == pytest.approx(0.25, rel=0.1)
    with pytest.raises(ValueError, match="Shapes differ"):
        weighted_explained_variance(y, y_hat[:, :3])


def test_byol_file_saved_with_the_old_default_loads_with_its_size(kang_top_genes, tmp_path):
    """Files whose options left projection_hidden to the study's 4096 keep that size."""
    scssl.model.SSLEncoder.setup_anndata(kang_top_genes)
    model = scssl.model.SSLEncoder(kang_top_genes, pretext="byol", projection_hidden=48, **SMALL)
    model.init_params_["kwargs"]["pretext_kwargs"].pop("projection_hidden")  # as saved then
    model.save(tmp_path / "byol")
    loaded = scssl.model.SSLEncoder.load(tmp_path / "byol", adata=kang_top_genes)
    assert loaded.module.projector[0].out_features == 48
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), model.get_latent_representation()
    )
    fresh = scssl.model.SSLEncoder(kang_top_genes, pretext="byol", **SMALL)
    assert fresh.module.projector[0].out_features == 512
