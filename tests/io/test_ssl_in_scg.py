"""Checkpoint files in the key layout and shapes of the ssl_in_scg releases (small gene lists).

The modules below follow the structure of the study's code (theislab/ssl_in_scg):
``MLP`` = (Linear, activation, Dropout) per hidden layer then a final Linear; the masked
autoencoder's decoder is ``Sequential(MLP, Sigmoid)``; the NB variant's decoder is
``Sequential(MLP)`` ending in Softplus with ``2 x genes`` outputs plus ``px_r``; Barlow Twins
saves ``BarlowTwins.state_dict()`` (backbone, projector with BatchNorm, ``bn``); BYOL's Lightning
module holds ``inner_model`` and ``byol`` (net, online_encoder with projector, online_predictor,
target_encoder); fine-tuned classifiers hold ``classifier`` (ReLU MLP) and two buffers.
Also an independent numpy forward pass used as the reference.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn

HIDDEN = [24, 24, 16, 16]
LATENT = 8


def study_mlp(n_in, channels, activation=nn.SELU, dropout=0.1, final_activation=None):
    layers = []
    for n_out in channels[:-1]:
        layers += [nn.Linear(n_in, n_out), activation(), nn.Dropout(dropout)]
        n_in = n_out
    layers.append(nn.Linear(n_in, channels[-1]))
    if final_activation is not None:
        layers.append(final_activation())
    return nn.Sequential(*layers)


def _bn_mlp(dim, out, hidden):
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


def _randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def gene_table(n_genes: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature_id": [f"ENSG{i + 1:011d}" for i in range(n_genes)],
            "feature_name": [f"GENE{i}" for i in range(n_genes)],
        }
    )


def masked_autoencoder_state(n_genes, seed=0):
    torch.manual_seed(seed)
    encoder = study_mlp(n_genes, [*HIDDEN, LATENT])
    decoder = nn.Sequential(study_mlp(LATENT, [*HIDDEN[::-1], n_genes]), nn.Sigmoid())
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    return state


def nb_state(n_genes, seed=1):
    torch.manual_seed(seed)
    encoder = study_mlp(n_genes, [*HIDDEN, LATENT])
    decoder = nn.Sequential(
        study_mlp(LATENT, [*HIDDEN[::-1], 2 * n_genes], final_activation=nn.Softplus)
    )
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    state["px_r"] = torch.randn(n_genes)
    return state


class _BarlowTwins(nn.Module):
    def __init__(self, n_genes):
        super().__init__()
        self.backbone = study_mlp(n_genes, [*HIDDEN, LATENT], dropout=0.0)
        sizes = [LATENT, 16, 16, 32, 32]
        layers = []
        for i in range(len(sizes) - 2):
            layers += [
                nn.Linear(sizes[i], sizes[i + 1], bias=False),
                nn.BatchNorm1d(sizes[i + 1]),
                nn.ReLU(),
            ]
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.projector = nn.Sequential(*layers)
        self.bn = nn.BatchNorm1d(sizes[-1], affine=False)


def barlow_twins_state(n_genes, seed=2):
    torch.manual_seed(seed)
    model = _BarlowTwins(n_genes)
    _randomise_bn(model)
    return model.state_dict()


class _NetWrapper(nn.Module):
    def __init__(self, net, hidden_dim):
        super().__init__()
        self.net = net
        self.projector = _bn_mlp(hidden_dim, 12, 32)


class _BYOL(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        # The study hooks the second-to-last child of the MLP: its input to the last Linear.
        self.online_encoder = _NetWrapper(net, HIDDEN[-1])
        self.online_predictor = _bn_mlp(12, 12, 32)
        self.target_encoder = copy.deepcopy(self.online_encoder)


class _MLPBYOL(nn.Module):
    def __init__(self, n_genes):
        super().__init__()
        self.inner_model = study_mlp(n_genes, [*HIDDEN, LATENT])
        self.byol = _BYOL(self.inner_model)


def byol_state(n_genes, seed=3):
    torch.manual_seed(seed)
    model = _MLPBYOL(n_genes)
    _randomise_bn(model)
    return model.state_dict()


def classifier_state(n_genes, n_classes=5, seed=4):
    torch.manual_seed(seed)
    classifier = study_mlp(n_genes, [*HIDDEN, LATENT, n_classes], activation=nn.ReLU)
    state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
    state["class_weights"] = torch.ones(n_classes)
    state["child_lookup"] = torch.eye(n_classes, dtype=torch.int64)
    return state


def lightning_file(state: dict, path):
    """A dict with the top-level keys of a Lightning checkpoint."""
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.0.9",
            "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"ready": 4}}}},
            "callbacks": {
                "ModelCheckpoint{'monitor': 'val_loss'}": {
                    "best_model_score": torch.tensor(0.12),
                    "best_model_path": "/x/best_checkpoint_val.ckpt",
                    "dirpath": "/x",
                }
            },
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}],
            "lr_schedulers": [{"step_size": 2, "gamma": 0.9, "base_lrs": [1e-3]}],
        },
        path,
    )
    return path


# ------------------------------------------------------------------ reference forward pass
def _selu(x):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _relu(x):
    return np.maximum(x, 0)


def numpy_forward(state: dict, prefix: str, x: np.ndarray, activation="selu", n_layers=None):
    """Study MLP on ``x``: linear layers at prefix{0,3,...}, activation between, none last."""
    act = _selu if activation == "selu" else _relu
    indices = sorted({int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)})
    if n_layers is not None:
        indices = indices[:n_layers]
    h = x.astype(np.float64)
    for position, index in enumerate(indices):
        w = state[f"{prefix}{index}.weight"].double().numpy()
        b = state[f"{prefix}{index}.bias"].double().numpy()
        h = h @ w.T + b
        if position < len(indices) - 1:
            h = act(h)
    return h


def study_input(counts: np.ndarray, source_columns: np.ndarray) -> np.ndarray:
    """The study's preprocessing: genes in checkpoint order (missing -> 0), then
    ``normalize_total(1e4)`` over them and ``log1p``."""
    counts = np.asarray(counts, dtype=np.float64)
    x = np.zeros((counts.shape[0], len(source_columns)))
    present = source_columns >= 0
    x[:, present] = counts[:, source_columns[present]]
    library = x.sum(axis=1, keepdims=True)
    scale = np.divide(1e4, library, out=np.zeros_like(library), where=library > 0)
    return np.log1p(x * scale)


# ====================================================================== tests
import json  # noqa: E402
import logging  # noqa: E402
import pickle  # noqa: E402

import anndata as ad  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import scssl  # noqa: E402
from scssl.io import (  # noqa: E402
    UnsafeCheckpointError,
    detect_kind,
    read_gene_list,
    read_ssl_in_scg,
    read_ssl_in_scg_classifier,
)

N_GENES = 40
BUILDERS = {
    "masked_autoencoder": masked_autoencoder_state,
    "masked_autoencoder_nb": nb_state,
    "barlow_twins": barlow_twins_state,
    "byol": byol_state,
}
ENCODER_PREFIX = {
    "masked_autoencoder": "encoder.",
    "masked_autoencoder_nb": "encoder.",
    "barlow_twins": "backbone.",
    "byol": "inner_model.",
}


def write_checkpoint(kind, directory, n_genes=N_GENES):
    state = (BUILDERS[kind] if kind != "classifier" else classifier_state)(n_genes)
    path = directory / f"{kind}.ckpt"
    if kind == "barlow_twins":  # the study saves BarlowTwins.state_dict() with torch.save
        torch.save(state, path)
    else:
        lightning_file(state, path)
    return path, state


@pytest.fixture
def genes_file(tmp_path):
    path = tmp_path / "var.parquet"
    gene_table(N_GENES).to_parquet(path)
    return path


def user_counts(n_cells=30, n_genes=N_GENES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(3, 0.4, size=(n_cells, n_genes)).astype(np.float32)


def user_adata(variant: str, seed=0):
    """A user's AnnData over the checkpoint genes, in one of several gene layouts.

    Returns the AnnData and, for every checkpoint gene, its column in it (-1 when missing),
    worked out here independently of scssl.
    """
    table = gene_table(N_GENES)
    rng = np.random.default_rng(seed)
    symbols = table["feature_name"].to_numpy()
    ids = table["feature_id"].to_numpy()
    if variant == "symbols":
        names, keep = symbols.copy(), np.arange(N_GENES)
    elif variant in ("shuffled_missing_extra", "ensembl_versioned", "lowercase"):
        keep = rng.permutation(N_GENES)[: int(0.7 * N_GENES)]  # 30% missing, shuffled
        names = symbols[keep]
        if variant == "ensembl_versioned":
            names = np.array([f"{e}.{rng.integers(1, 20)}" for e in ids[keep]])
        if variant == "lowercase":
            names = np.array([s.lower() for s in names])
    elif variant == "duplicates":
        keep = np.arange(N_GENES)
        names = symbols.copy()
    else:
        raise ValueError(variant)
    counts = user_counts(seed=seed + 1, n_genes=len(keep))
    extra_names = np.array(
        [f"ENSG9{i:010d}.1" if variant == "ensembl_versioned" else f"EXTRA{i}" for i in range(6)]
    )
    if variant != "symbols":
        counts = np.hstack([counts, user_counts(seed=seed + 2, n_genes=6)])
        names = np.concatenate([names, extra_names])
    source = np.full(N_GENES, -1)
    source[keep] = np.arange(len(keep))
    if variant == "duplicates":
        # GENE3 appears a second time (e.g. two Ensembl IDs with the same symbol) before the
        # extras; the first occurrence is used.
        counts = np.hstack([counts, user_counts(seed=seed + 3, n_genes=1)])
        names = np.concatenate([names, ["GENE3"]])
    adata = ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(counts.shape[0])]),
        var=pd.DataFrame(index=pd.Index(names)),
    )
    return adata, source


def reference_embedding(state, kind, adata, source):
    prefix = ENCODER_PREFIX[kind]
    counts = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    return numpy_forward(state, prefix, study_input(counts, source))


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_detect_and_map_every_format(kind, tmp_path):
    path, state = write_checkpoint(kind, tmp_path)
    assert detect_kind(torch.load(path, weights_only=True).get("state_dict", state)) == kind
    ckpt = read_ssl_in_scg(path)
    assert ckpt.kind == kind
    assert (ckpt.n_input, ckpt.n_hidden, ckpt.n_latent) == (N_GENES, tuple(HIDDEN), LATENT)
    prefix = ENCODER_PREFIX[kind]
    # sparse first layer: weight stored (in, out) = transpose of the study's nn.Linear
    assert torch.equal(ckpt.encoder["encoder.0.weight"], state[f"{prefix}0.weight"].t())
    assert torch.equal(ckpt.encoder["encoder.12.weight"], state[f"{prefix}12.weight"])
    if kind == "masked_autoencoder_nb":
        assert torch.equal(ckpt.extra["px_r"], state["px_r"])
        assert ckpt.extra["decoder.12.weight"].shape == (N_GENES, HIDDEN[0])
        assert torch.equal(ckpt.extra["decoder.12.weight"], state["decoder.0.12.weight"][:N_GENES])
    if kind == "byol":
        assert "projector.0.weight" in ckpt.extra and "predictor.3.weight" in ckpt.extra
    if kind == "barlow_twins":
        assert "bn.running_var" in ckpt.extra


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    "variant", ["symbols", "shuffled_missing_extra", "ensembl_versioned", "lowercase", "duplicates"]
)
def test_embedding_matches_study_forward_pass(kind, variant, tmp_path, genes_file, caplog):
    path, state = write_checkpoint(kind, tmp_path)
    adata, source = user_adata(variant)
    before = adata.X.copy()
    with caplog.at_level(logging.INFO, logger="scssl"):
        model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    assert "model genes" in caplog.text  # the alignment report is logged
    expected = reference_embedding(state, kind, adata, source)
    np.testing.assert_allclose(model.get_latent_representation(), expected, atol=2e-5, rtol=1e-4)
    # any other AnnData is aligned on the fly and gives the same numbers
    np.testing.assert_allclose(
        model.get_latent_representation(adata), expected, atol=2e-5, rtol=1e-4
    )
    assert (adata.X != before).nnz == 0  # the user's matrix is untouched
    report = model.adata.uns["scssl_alignment"]
    assert report["n_matched"] == int((source >= 0).sum())
    if variant == "ensembl_versioned":
        assert report["matched_by"] == "Ensembl ID"
    if variant == "duplicates":
        assert report["n_duplicates_ignored"] == 1
    assert model.pretrained_from_["kind"] == kind


def test_placeholder_setup_then_embed_any_data(tmp_path, genes_file):
    path, state = write_checkpoint("masked_autoencoder", tmp_path)
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file)
    adata, source = user_adata("shuffled_missing_extra", seed=5)
    np.testing.assert_allclose(
        model.get_latent_representation(adata),
        reference_embedding(state, "masked_autoencoder", adata, source),
        atol=2e-5,
        rtol=1e-4,
    )
    # the decoder of the masked autoencoder is loaded into scssl's mirrored decoder
    assert torch.equal(model.module.decoder[12].weight, state["decoder.0.12.weight"])


def test_layer_with_counts(tmp_path, genes_file):
    path, state = write_checkpoint("masked_autoencoder", tmp_path)
    adata, source = user_adata("shuffled_missing_extra")
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata, layer="counts")
    counts_view = ad.AnnData(X=adata.layers["counts"], var=adata.var)
    np.testing.assert_allclose(
        model.get_latent_representation(),
        reference_embedding(state, "masked_autoencoder", counts_view, source),
        atol=2e-5,
        rtol=1e-4,
    )


def test_low_overlap_refused_with_report(tmp_path, genes_file):
    path, _ = write_checkpoint("masked_autoencoder", tmp_path)
    adata, _ = user_adata("symbols")
    adata = adata[:, :15].copy()  # 15 of 40 genes = 37.5%
    with pytest.raises(ValueError, match=r"Only 15 of 40 model genes \(37.5%\)") as info:
        scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    assert "Missing e.g.: GENE15" in str(info.value)
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata, min_overlap=0.3)
    assert model.adata.uns["scssl_alignment"]["n_matched"] == 15


def test_gene_list_shape_mismatch_names_expected_and_actual(tmp_path):
    path, _ = write_checkpoint("masked_autoencoder", tmp_path)
    wrong = tmp_path / "genes.csv"
    gene_table(N_GENES - 3).to_csv(wrong, index=False)
    with pytest.raises(ValueError, match=r"reads 40 genes .* has 37 genes"):
        scssl.model.SSLEncoder.from_ssl_in_scg(path, wrong)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv"])
def test_gene_list_formats(tmp_path, suffix):
    table = gene_table(7)
    path = tmp_path / f"var{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    vocabulary = read_gene_list(path)
    assert vocabulary.symbols == table["feature_name"].tolist()
    assert vocabulary.ensembl_ids == table["feature_id"].tolist()
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="feature_id"):
        read_gene_list(bad)


def test_inconsistent_shapes_and_unknown_layouts(tmp_path):
    state = masked_autoencoder_state(N_GENES)
    state["encoder.6.weight"] = torch.zeros(16, 23)  # does not chain with encoder.3 (24 out)
    bad = lightning_file(state, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"encoder.6.weight' has shape \(16, 23\)"):
        read_ssl_in_scg(bad)
    unknown = tmp_path / "unknown.pt"
    torch.save({"foo.weight": torch.zeros(2, 2)}, unknown)
    with pytest.raises(ValueError, match="Unrecognised checkpoint layout"):
        read_ssl_in_scg(unknown)
    path, _ = write_checkpoint("byol", tmp_path)
    with pytest.raises(ValueError, match="has the keys of a 'byol' checkpoint"):
        read_ssl_in_scg(path, kind="masked_autoencoder")


def test_real_lightning_checkpoint(tmp_path, genes_file):
    """A checkpoint written by Lightning itself (optimizer state, loops, hyper_parameters
    naming classes such as nn.SELU) loads with weights_only=True."""
    import lightning.pytorch as pl

    class StudyAutoEncoder(pl.LightningModule):
        def __init__(self, gene_dim, activation=nn.SELU):
            super().__init__()
            self.save_hyperparameters()
            self.encoder = study_mlp(gene_dim, [*HIDDEN, LATENT], activation=activation)
            self.decoder = nn.Sequential(
                study_mlp(LATENT, [*HIDDEN[::-1], gene_dim], activation=activation),
                nn.Sigmoid(),
            )

        def training_step(self, batch, _):
            (x,) = batch
            return torch.nn.functional.mse_loss(self.decoder(self.encoder(x)), x)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.1)

    torch.manual_seed(0)
    module = StudyAutoEncoder(N_GENES)
    data = torch.utils.data.TensorDataset(torch.rand(16, N_GENES))
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    path = tmp_path / "best_checkpoint_val.ckpt"
    trainer.save_checkpoint(path)
    state = module.state_dict()
    adata, source = user_adata("shuffled_missing_extra")
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    np.testing.assert_allclose(
        model.get_latent_representation(),
        reference_embedding(state, "masked_autoencoder", adata, source),
        atol=2e-5,
        rtol=1e-4,
    )


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("container", ["torch_zip", "plain_pickle"])
def test_pickle_payload_refused_and_never_run(tmp_path, genes_file, container):
    marker = tmp_path / "payload_ran"
    content = {"state_dict": masked_autoencoder_state(N_GENES), "hyper": _Payload(marker)}
    path = tmp_path / "evil.ckpt"
    if container == "torch_zip":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content))
    # The payload is live: an unrestricted load runs it.
    if container == "torch_zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UnsafeCheckpointError, match=r"Refused to load .*builtin\w*\.exec"):
        read_ssl_in_scg(path)
    with pytest.raises(UnsafeCheckpointError):
        scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file)
    assert not marker.exists()


def test_safetensors_checkpoint_in_study_layout(tmp_path, genes_file):
    from safetensors.torch import save_file

    state = masked_autoencoder_state(N_GENES)
    path = tmp_path / "masked.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    adata, source = user_adata("symbols")
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    np.testing.assert_allclose(
        model.get_latent_representation(),
        reference_embedding(state, "masked_autoencoder", adata, source),
        atol=2e-5,
        rtol=1e-4,
    )


def test_classifier_mapping_numpy_forward(tmp_path, genes_file):
    path, state = write_checkpoint("classifier", tmp_path)
    labels = tmp_path / "cell_type.parquet"
    names = ["B cell", "T cell", "NK cell", "monocyte", "platelet"]
    pd.DataFrame({"label": names}).to_parquet(labels)
    parsed = read_ssl_in_scg_classifier(path, genes_file, labels=labels)
    assert parsed.labels == names
    assert parsed.activation == "relu"
    assert set(parsed.state_dict) == {
        *(f"encoder.{i}.{p}" for i in (0, 3, 6, 9, 12) for p in ("weight", "bias")),
        "head.2.weight",
        "head.2.bias",
    }
    assert parsed.checkpoint.unmapped == ["class_weights", "child_lookup"]
    # Build the contract's modules (encoder = scssl.nn.mlp, head = ReLU, Dropout, Linear)
    encoder = scssl.nn.mlp(
        N_GENES, HIDDEN, LATENT, activation="relu", dropout_rate=0.1, sparse_input=True
    )
    head = nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Linear(LATENT, len(names)))
    holder = nn.Module()
    holder.encoder, holder.head = encoder, head
    holder.load_state_dict(parsed.state_dict, strict=True)
    holder.eval()
    adata, source = user_adata("shuffled_missing_extra")
    x = study_input(adata.X.toarray(), source)
    with torch.no_grad():
        logits = head(encoder(torch.as_tensor(x, dtype=torch.float32))).numpy()
    expected = numpy_forward(state, "classifier.", x, activation="relu")
    np.testing.assert_allclose(logits, expected, atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="predicts 5 classes but 2 label names"):
        read_ssl_in_scg_classifier(path, genes_file, labels=["a", "b"])
    other, _ = write_checkpoint("byol", tmp_path)
    with pytest.raises(ValueError, match="not a fine-tuned classifier"):
        read_ssl_in_scg_classifier(other, genes_file)


def test_classifier_encoder_as_ssl_encoder(tmp_path, genes_file):
    path, state = write_checkpoint("classifier", tmp_path)
    adata, source = user_adata("symbols")
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    x = study_input(adata.X.toarray(), source)
    np.testing.assert_allclose(
        model.get_latent_representation(),
        numpy_forward(state, "classifier.", x, activation="relu", n_layers=5),
        atol=2e-5,
        rtol=1e-4,
    )


# ------------------------------------------------------------------------ round trips
@pytest.fixture
def loaded_model(tmp_path, genes_file):
    path, _ = write_checkpoint("masked_autoencoder", tmp_path)
    adata, _ = user_adata("shuffled_missing_extra")
    return scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)


def test_round_trips_are_bit_identical(loaded_model, tmp_path, monkeypatch):
    query, _ = user_adata("ensembl_versioned", seed=7)
    expected = loaded_model.get_latent_representation(query)

    loaded_model.save(str(tmp_path / "saved"), save_anndata=True)
    reloaded = scssl.model.SSLEncoder.load(str(tmp_path / "saved"))
    assert np.array_equal(reloaded.get_latent_representation(query), expected)
    assert reloaded.pretrained_from_["kind"] == "masked_autoencoder"
    assert reloaded.gene_vocabulary.ensembl_ids == loaded_model.gene_vocabulary.ensembl_ids

    out = scssl.io.export_safetensors(loaded_model, tmp_path / "portable")
    card = json.loads((out / "model_card.json").read_text())
    assert card["model_class"] == "SSLEncoder"
    assert card["init_params"]["n_hidden"] == HIDDEN
    assert card["gene_vocabulary"]["symbols"][:2] == ["GENE0", "GENE1"]
    assert card["pretrained_from"]["kind"] == "masked_autoencoder"
    assert card["versions"]["scssl"] == scssl.__version__
    assert card["training_data"]["n_genes"] == N_GENES
    for adata in (None, query):
        imported = scssl.io.import_safetensors(out, adata=adata)
        assert np.array_equal(imported.get_latent_representation(query), expected)
    with pytest.raises(FileExistsError):
        scssl.io.export_safetensors(loaded_model, out)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from scvi.hub import HubModel

    scssl.io.save_scvi_hub(loaded_model, tmp_path / "hub")
    hub = HubModel(str(tmp_path / "hub"))
    assert hub.metadata.model_parent_module == "scssl.model"
    assert np.array_equal(hub.model.get_latent_representation(query), expected)


def test_safetensors_round_trip_with_batches(synthetic_counts, tmp_path):
    scssl.model.SSLEncoder.setup_anndata(synthetic_counts, batch_key="batch")
    model = scssl.model.SSLEncoder(synthetic_counts, n_hidden=(16,), n_latent=4)
    model.train(max_epochs=1, enable_progress_bar=False)
    expected = model.get_reconstructed_expression(return_numpy=True)
    out = scssl.io.export_safetensors(model, tmp_path / "m")
    for adata in (None, synthetic_counts):
        imported = scssl.io.import_safetensors(out, adata=adata)
        got = imported.get_reconstructed_expression(synthetic_counts, return_numpy=True)
        assert np.array_equal(got, expected)
    assert json.loads((out / "model_card.json").read_text())["training_data"]["n_cells"] == 200


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_pretext_likelihood_and_heads(kind, tmp_path, genes_file):
    path, state = write_checkpoint(kind, tmp_path)
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file)
    module = model.module
    expected_pretext = {"barlow_twins": "barlow_twins", "byol": "byol"}.get(kind, "random_mask")
    assert module.pretext == expected_pretext
    loaded = set(model.pretrained_from_["loaded"])
    if kind == "masked_autoencoder_nb":
        assert module.likelihood == "nb"
        assert torch.equal(module.px_r.detach(), state["px_r"])
        assert torch.equal(
            module.decoder[12].weight.detach(), state["decoder.0.12.weight"][:N_GENES]
        )
    if kind == "barlow_twins":
        for name in ("projector.0.weight", "projector.9.weight", "projector.4.running_var"):
            assert torch.equal(module.state_dict()[name], state[name])
        assert torch.equal(module.bn.running_mean, state["bn.running_mean"])
    if kind == "byol":
        # the target encoder copies the study's target network (first weight transposed)
        assert torch.equal(
            module.target_encoder[0].weight.detach(), state["byol.target_encoder.net.0.weight"].t()
        )
        assert "predictor.3.weight" in loaded
        # the study's projector reads a 16-d (here) hidden layer, scssl's the 8-d embedding
        assert "projector.0.weight" in model.pretrained_from_["not_loaded"]
    assert all(name in loaded for name in module.state_dict() if name.startswith("encoder."))


def test_duplicate_symbols_in_the_gene_list(tmp_path, caplog):
    table = gene_table(N_GENES)
    table.loc[7, "feature_name"] = "GENE3"  # two checkpoint genes share a symbol
    genes = tmp_path / "var.csv"
    table.to_csv(genes, index=False)
    path, state = write_checkpoint("masked_autoencoder", tmp_path)
    placeholder = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes)  # no warning, unique index
    assert placeholder.adata.var_names.is_unique
    adata, source = user_adata("symbols")
    with caplog.at_level(logging.WARNING, logger="scssl"):
        model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes, adata=adata)
    assert "1 symbols name several genes of the checkpoint (e.g. GENE3)" in caplog.text
    source = source.copy()
    source[7] = source[3]  # by symbol, GENE3 of the data feeds both inputs
    np.testing.assert_allclose(
        model.get_latent_representation(),
        reference_embedding(state, "masked_autoencoder", adata, source),
        atol=2e-5,
        rtol=1e-4,
    )
    # with Ensembl IDs the match is exact and no warning is given
    caplog.clear()
    by_id = adata.copy()
    by_id.var_names = gene_table(N_GENES)["feature_id"].to_numpy()
    with caplog.at_level(logging.WARNING, logger="scssl"):
        exact = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes, adata=by_id)
    assert "symbols name several genes" not in caplog.text
    np.testing.assert_allclose(
        exact.get_latent_representation(),
        reference_embedding(state, "masked_autoencoder", adata, np.arange(N_GENES)),
        atol=2e-5,
        rtol=1e-4,
    )


@pytest.mark.parametrize("kind", ["masked_autoencoder_nb", "barlow_twins", "byol"])
def test_safetensors_round_trip_every_pretext(kind, tmp_path, genes_file):
    path, _ = write_checkpoint(kind, tmp_path)
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file)
    query, _ = user_adata("shuffled_missing_extra", seed=3)
    expected = model.get_latent_representation(query)
    out = scssl.io.export_safetensors(model, tmp_path / "portable")
    imported = scssl.io.import_safetensors(out)
    assert imported.module.pretext == model.module.pretext
    assert np.array_equal(imported.get_latent_representation(query), expected)
    for name, value in model.module.state_dict().items():
        assert torch.equal(imported.module.state_dict()[name], value), name


def test_published_classifier_predicts_like_the_study(tmp_path, genes_file):
    path, state = write_checkpoint("classifier", tmp_path)
    names = ["B cell", "T cell", "NK cell", "monocyte", "platelet"]
    adata, source = user_adata("shuffled_missing_extra")
    before = adata.copy()
    clf = scssl.model.SSLClassifier.from_ssl_in_scg(path, genes_file, adata, labels=names)
    assert clf.class_names_ == names
    x = study_input(adata.X.toarray(), source)
    logits = numpy_forward(state, "classifier.", x, activation="relu")
    probabilities = clf.predict(adata, soft=True)
    assert list(probabilities.columns) == names
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities.to_numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(
        np.asarray(clf.predict(adata)), np.asarray(names)[logits.argmax(1)]
    )
    assert list(adata.obs.columns) == list(before.obs.columns)  # the user's AnnData untouched


# ------------------------------------------------ faithful to the study's own forward passes
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


@pytest.mark.parametrize("kind", ["masked_autoencoder", "masked_autoencoder_nb"])
def test_published_decoders_reconstruct_as_the_study(kind, tmp_path, genes_file):
    path, state = write_checkpoint(kind, tmp_path)
    adata, source = user_adata("symbols")
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file, adata=adata)
    x = study_input(adata.X.toarray(), source)
    latent = numpy_forward(state, "encoder.", x)
    decoded = numpy_forward(state, "decoder.0.", latent)
    if kind == "masked_autoencoder":
        # the study's decoder: Sequential(MLP, Sigmoid), on log1p-normalised values
        expected = _sigmoid(decoded)
        got = model.get_reconstructed_expression(return_numpy=True)
    else:
        # the NB decoder's first `genes` Softplus outputs are the mean in counts
        expected = _softplus(decoded)[:, :N_GENES]
        got = model.get_reconstructed_expression(return_numpy=True, kind="counts")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert model.module.decoder_output == (
        "sigmoid" if kind == "masked_autoencoder" else "softplus"
    )


def test_published_classifier_embeds_after_its_relu(tmp_path, genes_file):
    path, state = write_checkpoint("classifier", tmp_path)
    adata, source = user_adata("symbols")
    model = scssl.model.SSLClassifier.from_ssl_in_scg(path, genes_file, adata)
    x = study_input(adata.X.toarray(), source)
    # predict_embedding of the study: the encoder's 8-d output after its ReLU
    expected = _relu(numpy_forward(state, "classifier.", x, activation="relu", n_layers=5))
    np.testing.assert_allclose(model.get_latent_representation(), expected, rtol=1e-4, atol=1e-5)


def test_class_names_follow_the_label_table_index(tmp_path, genes_file):
    path, _ = write_checkpoint("classifier", tmp_path)
    labels = tmp_path / "cell_type.parquet"
    # the study's categorical lookup maps output codes by its index, not by row order
    pd.DataFrame({"label": ["c3", "c1", "c0", "c4", "c2"]}, index=[3, 1, 0, 4, 2]).to_parquet(
        labels
    )
    parsed = read_ssl_in_scg_classifier(path, genes_file, labels=labels)
    assert parsed.labels == ["c0", "c1", "c2", "c3", "c4"]


def test_byol_heads_load_whole_or_not_at_all(tmp_path, genes_file):
    path, state = write_checkpoint("byol", tmp_path)
    model = scssl.model.SSLEncoder.from_ssl_in_scg(path, genes_file)
    loaded = set(model.pretrained_from_["loaded"])
    # the study's projector reads a hidden layer of another width: none of it is loaded
    assert not any(name.startswith(("projector.", "target_projector.")) for name in loaded)
    assert {"predictor.0.weight", "predictor.1.running_mean", "predictor.3.bias"} <= loaded
    assert not torch.equal(
        model.module.projector[0].bias.detach(), state["byol.online_encoder.projector.0.bias"]
    )
