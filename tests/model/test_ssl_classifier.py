import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch

import scssl
from scssl.benchmark import expected_calibration_error, macro_f1

CLASSES = ("A", "B", "C")


def make_cells(n_cells=600, n_genes=60, seed=0, label_noise=0.0, classes=CLASSES):
    """Counts where each class up-regulates its own block of genes."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(123).gamma(1.0, 2.0, size=n_genes)
    labels = rng.choice(list(classes), n_cells)
    block = n_genes // len(CLASSES)
    means = np.tile(base, (n_cells, 1))
    for k, name in enumerate(classes):
        column = CLASSES.index(name) if name in CLASSES else k
        means[labels == name, column * block : (column + 1) * block] *= 4.0
    counts = rng.poisson(means).astype(np.float32)
    observed = labels.copy()
    if label_noise:
        flip = rng.random(n_cells) < label_noise
        observed[flip] = rng.choice(list(classes), int(flip.sum()))
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(observed), "truth": labels},
        index=[f"c{seed}_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


@pytest.fixture(scope="module")
def small_encoder():
    scvi.settings.seed = 0
    adata = make_cells(400, seed=1)
    scssl.model.SSLEncoder.setup_anndata(adata)
    encoder = scssl.model.SSLEncoder(adata, n_hidden=(32,), n_latent=8, activation="selu")
    encoder.train(max_epochs=2, batch_size=128, enable_progress_bar=False)  # a few steps
    return encoder


def _train(encoder, adata, seed=0, **kwargs):
    scvi.settings.seed = seed
    clf = scssl.model.SSLClassifier.from_encoder(
        encoder, adata, "cell_type", **kwargs.pop("init", {})
    )
    kwargs.setdefault("max_epochs", 15)
    clf.train(enable_progress_bar=False, **kwargs)
    return clf


def test_from_encoder_contract_copies_weights_and_keeps_activation(small_encoder):
    adata = make_cells(200, seed=2)
    clf = scssl.model.SSLClassifier.from_encoder(small_encoder, adata, "cell_type")
    keys = set(clf.module.state_dict())
    assert {"encoder.0.weight", "encoder.3.weight", "head.2.weight", "head.2.bias"} <= keys
    assert isinstance(clf.module.head[0], torch.nn.Identity)  # the standardised embedding
    assert isinstance(clf.module.encoder[1], torch.nn.SELU)
    assert clf.class_names_ == list(CLASSES)
    assert clf.module.head[2].weight.shape == (3, 8)
    for name, value in small_encoder.module.encoder.state_dict().items():
        torch.testing.assert_close(clf.module.encoder.state_dict()[name], value)
    # the copy is independent: training the classifier leaves the encoder as it was
    before = small_encoder.module.encoder[0].weight.detach().clone()
    clf.train(max_epochs=2, enable_progress_bar=False)
    torch.testing.assert_close(small_encoder.module.encoder[0].weight, before)
    assert not torch.equal(clf.module.encoder[0].weight.detach(), before)


def test_relu_encoder_activation_is_kept():
    scvi.settings.seed = 0
    adata = make_cells(120, seed=3)
    scssl.model.SSLEncoder.setup_anndata(adata)
    encoder = scssl.model.SSLEncoder(adata, n_hidden=(16,), n_latent=4, activation="relu")
    encoder.train(max_epochs=1, enable_progress_bar=False)
    clf = scssl.model.SSLClassifier.from_encoder(encoder, adata, "cell_type")
    assert isinstance(clf.module.encoder[1], torch.nn.ReLU)
    relu_head = scssl.model.SSLClassifier.from_encoder(
        encoder, adata, "cell_type", head_activation="relu"
    )
    assert isinstance(relu_head.module.head[0], torch.nn.ReLU)


def test_freeze_encoder_trains_the_head_only(small_encoder):
    clf = _train(
        small_encoder, make_cells(300, seed=4), init={"freeze_encoder": True}, max_epochs=3
    )
    torch.testing.assert_close(clf.module.encoder[0].weight, small_encoder.module.encoder[0].weight)
    assert not torch.equal(clf.module.head[2].weight, torch.zeros_like(clf.module.head[2].weight))


def test_finetuned_share_interpolates_from_the_start(small_encoder):
    adata = make_cells(300, seed=5)
    runs = {
        share: _train(small_encoder, adata.copy(), max_epochs=3, finetuned_share=share)
        for share in (0.0, 0.5, 1.0)
    }
    default = _train(small_encoder, adata.copy(), max_epochs=3)  # keeps the fine-tuned model
    for (name, value), tuned in zip(
        default.module.named_parameters(), runs[1.0].module.parameters(), strict=True
    ):
        torch.testing.assert_close(value, tuned, msg=name)
    # 0 keeps the start: the pretrained encoder and the linear-probe head
    for name, value in small_encoder.module.encoder.state_dict().items():
        torch.testing.assert_close(runs[0.0].module.encoder.state_dict()[name], value)
    probe = scssl.model.SSLClassifier.from_encoder(small_encoder, adata.copy(), "cell_type")
    probe._start_head(probe._split(0.2, 10, 0)[0], linear_probe=True, seed=0)
    torch.testing.assert_close(runs[0.0].module.head[2].weight, probe.module.head[2].weight)
    start, half, tuned = (dict(runs[s].module.named_parameters()) for s in (0.0, 0.5, 1.0))
    assert not torch.equal(tuned["encoder.0.weight"], start["encoder.0.weight"])
    for name, value in half.items():
        torch.testing.assert_close(value, (start[name] + tuned[name]) / 2)
    with pytest.raises(ValueError, match=r"finetuned_share=1\.5"):
        _train(small_encoder, adata.copy(), finetuned_share=1.5)


def test_predict_learns_and_probabilities_sum_to_one(small_encoder):
    clf = _train(small_encoder, make_cells(600, seed=5))  # 8 epochs learn too little at weight 3
    query = make_cells(300, seed=6)
    proba = clf.predict(query, soft=True)
    assert list(proba.columns) == list(CLASSES)
    assert list(proba.index) == list(query.obs_names)
    np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, atol=1e-5)
    labels = clf.predict(query)
    assert labels.shape == (300,)
    assert macro_f1(query.obs["truth"], labels) > 0.9
    assert set(clf.calibration_) >= {"temperature", "ece_before", "ece_after"}


def test_class_balanced_weights(small_encoder):
    adata = make_cells(300, seed=7)
    adata = adata[(adata.obs["cell_type"] != "C") | (np.arange(300) % 5 == 0)].copy()
    counts = adata.obs["cell_type"].value_counts()[list(CLASSES)].to_numpy()
    inverse = counts.sum() / (3 * counts)

    def weights(**kwargs):
        clf = scssl.model.SSLClassifier.from_encoder(small_encoder, adata, "cell_type", **kwargs)
        return clf.module.class_weights.numpy()

    np.testing.assert_allclose(weights(), inverse, rtol=1e-5)  # the default
    np.testing.assert_allclose(weights(class_balance="sqrt"), np.sqrt(inverse), rtol=1e-5)
    np.testing.assert_allclose(weights(class_balance="none"), 1.0)
    with pytest.raises(ValueError, match="class_balance"):
        scssl.model.SSLClassifier.from_encoder(small_encoder, adata, "cell_type", class_balance=1)


def test_query_with_missing_and_shuffled_genes(small_encoder):
    clf = _train(small_encoder, make_cells(600, seed=8))
    query = make_cells(200, seed=9)
    full = clf.predict(query, soft=True)
    # shuffled genes: same answer
    shuffled = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    np.testing.assert_allclose(
        clf.predict(shuffled, soft=True).to_numpy(), full.to_numpy(), atol=1e-5
    )
    # 10 of 60 genes missing: zero-filled, still mostly right
    partial = query[:, 10:].copy()
    labels = clf.predict(partial)
    assert macro_f1(query.obs["truth"], labels) > 0.6
    with pytest.raises(ValueError, match="model genes"):
        clf.predict(query[:, :10].copy())


def test_unlabeled_category_is_not_learned_nor_predicted(small_encoder):
    adata = make_cells(400, seed=10)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    labels[::2] = "Unknown"
    adata.obs["cell_type"] = pd.Categorical(labels)
    clf = _train(small_encoder, adata, max_epochs=5)
    assert clf.class_names_ == list(CLASSES)
    assert set(clf.predict(make_cells(100, seed=11))) <= set(CLASSES)
    adata.obs["cell_type"] = "Unknown"
    with pytest.raises(ValueError, match="at least 2 classes"):
        _train(small_encoder, adata, max_epochs=1)


def test_custom_unlabeled_category_and_nan_labels(small_encoder):
    adata = make_cells(200, seed=12)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    labels[:50] = "?"
    adata.obs["cell_type"] = labels
    clf = scssl.model.SSLClassifier.from_encoder(
        small_encoder, adata, "cell_type", unlabeled_category="?"
    )
    assert sorted(clf.class_names_) == list(CLASSES)
    nan = make_cells(100, seed=13)
    nan.obs.loc[nan.obs_names[:5], "cell_type"] = np.nan
    with pytest.raises(ValueError, match="missing"):
        scssl.model.SSLClassifier.from_encoder(small_encoder, nan, "cell_type")
    with pytest.raises(KeyError, match="labels_key"):
        scssl.model.SSLClassifier.from_encoder(small_encoder, nan, "celltype")


def test_unseen_query_labels(small_encoder):
    """Query cell types the reference never had can only get reference labels (or Unknown)."""
    clf = _train(small_encoder, make_cells(600, seed=14, classes=("A", "B")))
    assert clf.class_names_ == ["A", "B"]
    query = make_cells(200, seed=15)  # includes class C
    predicted = clf.predict(query)
    assert set(predicted) <= {"A", "B"}
    known = query.obs["truth"].isin(["A", "B"]).to_numpy()
    assert macro_f1(query.obs["truth"][known], predicted[known]) > 0.85


def test_calibration_lowers_ece_on_held_out_cells(small_encoder):
    # noisy labels and no early stopping: the network overfits and becomes overconfident
    reference = make_cells(800, seed=16, label_noise=0.3)
    clf = _train(
        small_encoder,
        reference,
        max_epochs=60,
        validation_size=0.3,
        lr=3e-3,
        encoder_lr=3e-3,
        linear_probe_start=False,
        init={"head_dropout_rate": 0.0, "dropout_rate": 0.0, "pretext_weight": 0.0},
    )
    assert clf.calibration_["temperature"] > 1.0
    held_out = make_cells(800, seed=17, label_noise=0.3)
    observed = held_out.obs["cell_type"].astype(str).to_numpy()
    eces = {}
    for calibrated in (False, True):
        proba = clf.predict(held_out, soft=True, calibrated=calibrated)
        eces[calibrated] = expected_calibration_error(
            observed, proba.columns[proba.to_numpy().argmax(1)], proba.to_numpy().max(1)
        )
    assert eces[True] < eces[False]


def test_determinism_with_a_seed(small_encoder):
    adata = make_cells(300, seed=18)
    first = _train(small_encoder, adata.copy(), seed=3, max_epochs=3)
    second = _train(small_encoder, adata.copy(), seed=3, max_epochs=3)
    query = make_cells(100, seed=19)
    np.testing.assert_array_equal(
        first.predict(query, soft=True).to_numpy(), second.predict(query, soft=True).to_numpy()
    )
    # and a cell's prediction does not depend on the other cells of the minibatch
    np.testing.assert_allclose(
        first.predict(query[:7], soft=True).to_numpy(),
        first.predict(query, soft=True).to_numpy()[:7],
        atol=1e-6,
    )


def test_save_load_round_trip(small_encoder, tmp_path):
    reference = make_cells(300, seed=20)
    clf = _train(small_encoder, reference, max_epochs=3)
    query = make_cells(100, seed=21)
    clf.save(tmp_path / "clf", save_anndata=True)
    loaded = scssl.model.SSLClassifier.load(str(tmp_path / "clf"))
    np.testing.assert_array_equal(
        loaded.predict(query, soft=True).to_numpy(), clf.predict(query, soft=True).to_numpy()
    )
    assert loaded.class_names_ == clf.class_names_
    assert loaded.calibration_ == clf.calibration_
    assert float(loaded.module.temperature) == float(clf.module.temperature)
    # onto unlabelled cells (no labels column): predictions still identical
    unlabelled = query.copy()
    del unlabelled.obs["cell_type"]
    clf.save(tmp_path / "clf2")
    onto_query = scssl.model.SSLClassifier.load(str(tmp_path / "clf2"), adata=unlabelled)
    np.testing.assert_array_equal(onto_query.predict(query), clf.predict(query))


def test_bad_inputs(small_encoder):
    adata = make_cells(100, seed=24)
    with pytest.raises(TypeError, match="SSLEncoder"):
        scssl.model.SSLClassifier.from_encoder(object(), adata, "cell_type")
    one_class = adata.copy()
    one_class.obs["cell_type"] = "A"
    with pytest.raises(ValueError, match="at least 2 classes"):
        scssl.model.SSLClassifier.from_encoder(small_encoder, one_class, "cell_type")
    clf = scssl.model.SSLClassifier.from_encoder(small_encoder, adata, "cell_type")
    with pytest.raises(ValueError, match="validation_size"):
        clf.train(validation_size=1.2)


def test_validation_split_of_labelled_cells():
    from scssl.model._finetuning import split_labelled

    # class 0: 50 cells, class 1: 4 cells, class 2: 2 cells, -1: 10 unlabelled
    codes = np.repeat([0, 1, 2, -1], [50, 4, 2, 10])
    train, validation = split_labelled(codes, 3, 0.2, min_cells=2, seed=0)
    assert sorted(np.concatenate([train, validation])) == list(range(len(codes)))
    assert np.bincount(codes[validation], minlength=3).tolist() == [10, 1, 1]
    assert set(np.flatnonzero(codes == -1)) <= set(train)  # unlabelled cells all train
    # rare types keep all their cells for training
    train, validation = split_labelled(codes, 3, 0.2, min_cells=10, seed=0)
    assert np.bincount(codes[validation], minlength=3).tolist() == [10, 0, 0]
    # no share, no cell held out (it held one of each type out before)
    train, validation = split_labelled(codes, 3, 0.0, min_cells=2, seed=0)
    assert len(validation) == 0 and len(train) == len(codes)
    with pytest.raises(ValueError, match="No labelled cells"):
        split_labelled(np.full(5, -1), 3, 0.2, min_cells=2, seed=0)
    # a type of exactly min_cells cells holds one out; min_cells below 2 acts as 2
    _, validation = split_labelled(codes, 3, 0.2, min_cells=4, seed=0)
    assert np.bincount(codes[validation], minlength=3).tolist() == [10, 1, 0]
    for min_cells in (0, 1):
        _, validation = split_labelled(codes, 3, 0.2, min_cells=min_cells, seed=0)
        assert np.bincount(codes[validation], minlength=3).tolist() == [10, 1, 1]


def test_train_passes_the_validation_options(small_encoder):
    adata = make_cells(300, seed=25)
    rare = adata.obs["cell_type"].astype(str).to_numpy() == "C"
    keep = ~rare | (np.cumsum(rare) <= 6)  # 6 cells of type C
    adata = adata[keep].copy()
    counts = adata.obs["cell_type"].value_counts()
    clf = _train(small_encoder, adata, max_epochs=1, validation_min_cells=10)
    # the held-out cells of A and B calibrate; C's six cells all train
    expected = round(counts["A"] * 0.2) + round(counts["B"] * 0.2)
    assert clf.calibration_["n_cells"] == expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = _train(small_encoder, adata, max_epochs=1, validation_size=0.0)
    assert clf.calibration_ is None  # nothing held out, nothing calibrated, and no warning
    assert not [w for w in caught if "held-out cells" in str(w.message)]


def test_ece_metric():
    y = np.array(["a", "a", "b", "b"])
    assert expected_calibration_error(y, y, np.ones(4)) == 0.0
    # all predictions at confidence 0.9 and half right: |0.5 - 0.9| = 0.4
    assert expected_calibration_error(y, ["a", "b", "b", "a"], np.full(4, 0.9)) == pytest.approx(
        0.4
    )
    with pytest.raises(ValueError, match="length"):
        expected_calibration_error(y, y, np.ones(3))
