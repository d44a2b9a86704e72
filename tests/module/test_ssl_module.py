"""SSLModule's fast paths: sampled-gene reconstruction, exact programme columns, sparse views."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scssl.data import to_torch
from scssl.module import SSLModule
from scssl.nn import DropoutNoise, NegBinNoise, View


def _counts(n_cells=40, n_genes=60, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    dense = rng.poisson(rng.gamma(0.3, 2.0, size=(n_cells, n_genes))).astype(np.float32)
    dense[:, 0] += 1  # no empty cell
    return to_torch(sp.csr_matrix(dense))


def test_sampled_gene_loss_is_an_unbiased_estimate_of_the_full_loss():
    torch.manual_seed(0)
    module = SSLModule(60, n_hidden=(16,), n_latent=4, gene_sample_size=20).eval()
    x = _counts()
    x_norm = module.normalize(x)
    z = module.encode(x_norm)
    mask = torch.rand(x.shape) < module.masking.rate

    def loss(columns, column_weight=None):
        weight = mask.float() if columns is None else mask[:, columns].float()
        if column_weight is not None:
            weight = weight * column_weight
        outputs = {"x_norm": x_norm, "columns": columns, "loss_weight": weight}
        return module._reconstruction_loss(outputs, module.decode(z, None, columns)).loss.item()

    full = loss(None)
    # the losses of a partition of the genes add up to the loss over all genes
    parts = [loss(columns.sort().values) for columns in torch.randperm(60).view(3, 20)]
    assert sum(parts) == pytest.approx(full, rel=1e-5)
    # Poisson samples weighted by 1 / inclusion probability average to it (Horvitz-Thompson)
    module.set_gene_importance(torch.linspace(0.05, 2.0, 60))
    probability = module.gene_inclusion
    assert probability.sum().item() == pytest.approx(20, rel=1e-3)
    assert probability.min() > 0 and probability.max() <= 1
    module.train()
    draws = torch.tensor([loss(*module._sampled_columns("cpu")) for _ in range(2000)])
    assert abs(draws.mean().item() - full) < 4 * draws.std().item() / 2000**0.5


def test_training_steps_decode_a_sample_and_validation_all_genes():
    module = SSLModule(60, n_hidden=(16,), n_latent=4, gene_sample_size=20)
    x = _counts()
    module.train()
    outputs = module.inference(x)
    generated = module.generative(**module._get_generative_input({"X": x}, outputs))
    n_sampled = len(outputs["columns"])
    assert 5 < n_sampled < 40 and generated["x_hat"].shape == (40, n_sampled)
    assert outputs["loss_weight"].shape == (40, n_sampled)
    assert torch.isfinite(module.loss({"X": x}, outputs, generated).loss)
    module.eval()
    outputs = module.inference(x)
    assert outputs["columns"] is None and outputs["loss_weight"].shape == (40, 60)
    # no sampling: every training step decodes all genes
    module = SSLModule(60, n_hidden=(16,), n_latent=4, gene_sample_size=None).train()
    assert module.inference(x)["columns"] is None


def test_gene_programme_mask_decodes_exactly_the_masked_genes():
    members = np.zeros((4, 60), dtype=bool)
    for i in range(4):
        members[i, i * 10 : i * 10 + 10] = True
    torch.manual_seed(1)
    module = SSLModule(
        60,
        n_hidden=(16,),
        n_latent=4,
        pretext="gene_programme_mask",
        mask_rate=0.5,
        programme_members=members,
    ).eval()  # no dropout: both decodings below see the same network
    x = _counts()
    outputs = module.inference(x)
    columns = outputs["columns"]
    assert len(columns) == 20 and bool(outputs["loss_weight"].all())
    x_hat = module.generative(**module._get_generative_input({"X": x}, outputs))["x_hat"]
    # the same loss as decoding all genes and weighting by the mask
    full = module.decode(outputs["z"], None)
    target = module.normalize(x).to_dense()
    expected = ((full - target) ** 2)[:, columns].mean()
    assert module.loss({"X": x}, outputs, {"x_hat": x_hat}).loss.item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_views_act_on_detected_genes_and_stay_sparse():
    x = module_input = SSLModule(60).normalize(_counts())
    view = View(("negbin", "dropout"))(module_input)
    assert view.layout == torch.sparse_csr
    assert torch.equal(view.col_indices(), x.col_indices())
    assert torch.equal(view.crow_indices(), x.crow_indices())
    assert bool((view.values() >= 0).all())
    # the study's augmentation touches undetected genes too and is dense
    dense = View(("negbin",), on_zeros=True)(x)
    assert dense.layout == torch.strided and int((dense > 0).sum()) > x.values().numel()
    # dropout of the stored values is dropout of the dense matrix: zeros stay zeros
    torch.manual_seed(3)
    sparse_drop = DropoutNoise(0.3)(x).to_dense()
    assert bool(((sparse_drop == 0) | (x.to_dense() != 0)).all())
    assert 0.55 < float((sparse_drop != 0).sum()) / x.values().numel() < 0.85
    noisy = NegBinNoise(0.1)(x)
    assert bool((noisy.values() >= x.values()).all())


@pytest.mark.parametrize("pretext", ["byol", "barlow_twins"])
def test_contrastive_steps_feed_sparse_views_to_the_encoder(pretext, monkeypatch):
    module = SSLModule(
        60,
        n_hidden=(16,),
        n_latent=4,
        pretext=pretext,
        projection_hidden=32,
        projection_dim=8,
        projector_sizes=(16, 16),
    ).train()
    layouts = []
    first = module.encoder[0]
    original = first.forward
    monkeypatch.setattr(first, "forward", lambda x: layouts.append(x.layout) or original(x))
    x = _counts()
    outputs = module.inference(x)
    loss = module.loss({"X": x}, outputs, module.generative(outputs["z"])).loss
    loss.backward()
    assert layouts and set(layouts) == {torch.sparse_csr}


def test_a_bf16_autocast_step_keeps_the_loss_in_float32():
    module = SSLModule(60, n_hidden=(16,), n_latent=4, gene_sample_size=20).train()
    x = _counts()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = module.inference(x)
        generated = module.generative(**module._get_generative_input({"X": x}, outputs))
        loss = module.loss({"X": x}, outputs, generated).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert module.encoder[0].weight.grad is not None


def test_gene_loss_weights_scale_each_genes_reconstruction_error():
    torch.manual_seed(0)
    module = SSLModule(60, n_hidden=(16,), n_latent=4, reconstruction_gene_weights="inverse_sd")
    module.set_gene_spread(torch.linspace(0.1, 2.0, 60))
    weight = module.gene_loss_weight
    assert weight.mean().item() == pytest.approx(1.0, rel=1e-5) and weight[0] > weight[-1]
    x = _counts()
    module.eval()
    torch.manual_seed(1)
    weighted = module._masked_inference(x, module.normalize(x), None)
    plain = SSLModule(60, n_hidden=(16,), n_latent=4)
    torch.manual_seed(1)
    uniform = plain._masked_inference(x, plain.normalize(x), None)
    # same mask, each gene's entries times its weight
    torch.testing.assert_close(weighted["loss_weight"], uniform["loss_weight"] * weight)


def test_gene_loss_weights_follow_the_sampled_genes_and_silent_genes_get_the_floor():
    sd = torch.cat([torch.zeros(40), torch.linspace(0.1, 2.0, 20)])  # two thirds silent
    options = {"n_hidden": (16,), "n_latent": 4, "gene_sample_size": 20}
    module = SSLModule(60, reconstruction_gene_weights="inverse_sd", **options).train()
    module.set_gene_spread(sd)
    weight = module.gene_loss_weight
    # the floor is a quarter of the median spread of the genes that vary, not of all genes
    median_gene = 40 + 9  # sd 1.0, torch's (lower) median of the 20 that vary
    assert torch.allclose(weight[:40], weight[0])
    assert weight[0] / weight[median_gene] == pytest.approx(4.0, rel=1e-4)
    plain = SSLModule(60, **options).train()
    x = _counts()
    torch.manual_seed(3)
    weighted = module._masked_inference(x, module.normalize(x), None)
    torch.manual_seed(3)
    uniform = plain._masked_inference(x, plain.normalize(x), None)
    columns = weighted["columns"]
    assert columns is not None and len(columns) < 60  # a sample of the genes, as in training
    torch.testing.assert_close(columns, uniform["columns"])
    torch.testing.assert_close(weighted["loss_weight"], uniform["loss_weight"] * weight[columns])
