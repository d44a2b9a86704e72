import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi

import scssl
from scssl.metrics import macro_f1


def _deep_state(adata: ad.AnnData):
    return (
        adata.X.copy(),
        adata.obs.copy(),
        {k: np.array(v) for k, v in adata.obsm.items()},
        repr(adata.uns),
        list(adata.var_names),
    )


def _assert_same(adata: ad.AnnData, state):
    x, obs, obsm, uns, var_names = state
    assert (adata.X != x).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert set(adata.obsm) == set(obsm)
    for key, value in obsm.items():
        np.testing.assert_array_equal(adata.obsm[key], value)
    assert repr(adata.uns) == uns
    assert list(adata.var_names) == var_names


@pytest.fixture
def ref_query(kang_demo):
    reference = kang_demo[kang_demo.obs["stim"] == "CTRL"][:400].copy()
    query = kang_demo[kang_demo.obs["stim"] == "STIM"][:300].copy()
    return reference, query


def test_transfer_labels_columns_confidence_and_reference_untouched(trained_model, ref_query):
    reference, query = ref_query
    state = _deep_state(reference)
    assert (
        scssl.tl.transfer_labels(query, reference, labels_key="cell_type", model=trained_model)
        is None
    )
    _assert_same(reference, state)
    pred = query.obs["cell_type_pred"]
    confidence = query.obs["cell_type_confidence"].to_numpy()
    assert isinstance(pred.dtype, pd.CategoricalDtype)
    assert set(pred) <= set(reference.obs["cell_type"].astype(str))
    # k=5 majority vote: confidence is a share of 5 votes, at least 1/5
    assert np.all(np.isin(np.round(confidence * 5, 5), [1, 2, 3, 4, 5]))
    info = query.uns["cell_type_pred"]
    params = info["params"]
    assert params["method"] == "knn" and params["k"] == 5 and params["labels_key"] == "cell_type"
    assert info["k"] == 5 and info["search"] == "exact"
    # agrees with an independent kNN on the model's embeddings
    expected, _ = scssl.benchmark.knn_transfer(
        trained_model.get_latent_representation(reference),
        reference.obs["cell_type"],
        trained_model.get_latent_representation(query),
    )
    assert np.mean(pred.astype(str).to_numpy() == expected) > 0.97


def test_min_confidence_rejects_and_distance_weights(trained_model, ref_query):
    reference, query = ref_query
    out = scssl.tl.transfer_labels(
        query,
        reference,
        labels_key="cell_type",
        model=trained_model,
        min_confidence=0.8,
        key_added="ct",
        weights="distance",
        copy=True,
    )
    assert "ct_pred" not in query.obs  # copy=True leaves the input alone
    low = out.obs["ct_confidence"].to_numpy() < 0.8
    assert low.any() and (~low).any()
    assert (out.obs["ct_pred"][low] == "Unknown").all()
    assert (out.obs["ct_pred"][~low] != "Unknown").all()
    share = out.uns["ct_pred"]["share_unknown"]
    assert share == pytest.approx(low.mean())
    # distance weights: confidences are not restricted to multiples of 1/5
    assert not np.all(np.isin(np.round(out.obs["ct_confidence"] * 5, 4), [1, 2, 3, 4, 5]))


def test_use_rep_and_query_with_missing_genes(trained_model, ref_query):
    reference, query = ref_query
    scssl.tl.embed(reference, trained_model)
    partial = query[:, : int(query.n_vars * 0.7)].copy()
    scssl.tl.transfer_labels(partial, reference, labels_key="cell_type", model=trained_model)
    assert partial.obs["cell_type_pred"].notna().all()
    scssl.tl.embed(partial, trained_model)
    scssl.tl.transfer_labels(
        partial, reference, labels_key="cell_type", use_rep="X_scssl", key_added="r"
    )
    np.testing.assert_array_equal(partial.obs["r_pred"], partial.obs["cell_type_pred"])
    with pytest.raises(ValueError, match="model genes"):
        scssl.tl.transfer_labels(
            query[:, :100].copy(), reference, labels_key="cell_type", model=trained_model
        )


def test_approximate_index_matches_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 5
    codes = rng.integers(0, 4, 3000)
    emb = centres[codes] + rng.normal(size=(3000, 10))
    reference = ad.AnnData(np.zeros((2500, 1)), obsm={"X": emb[:2500]})
    reference.obs["label"] = pd.Categorical(np.array(list("abcd"))[codes[:2500]])
    query = ad.AnnData(np.zeros((500, 1)), obsm={"X": emb[2500:]})
    scssl.tl.transfer_labels(query, reference, labels_key="label", use_rep="X", key_added="exact")
    scssl.tl.transfer_labels(
        query, reference, labels_key="label", use_rep="X", key_added="approx", exact_max_cells=100
    )
    assert query.uns["approx_pred"]["search"] == "pynndescent"
    assert query.uns["exact_pred"]["search"] == "exact"
    agree = np.mean(query.obs["exact_pred"].to_numpy() == query.obs["approx_pred"].to_numpy())
    assert agree > 0.98
    assert (
        np.mean(query.obs["exact_pred"].astype(str) == np.array(list("abcd"))[codes[2500:]]) > 0.95
    )


def test_unseen_labels_and_unlabelled_reference_cells():
    rng = np.random.default_rng(1)
    reference = ad.AnnData(np.zeros((60, 1)), obsm={"X": rng.normal(size=(60, 3))})
    labels = np.array(["a", "b"] * 30, dtype=object)
    labels[:6] = None
    reference.obs["label"] = labels
    query = ad.AnnData(np.zeros((10, 1)), obsm={"X": rng.normal(size=(10, 3)) + 10})
    query.obs["label"] = "c"  # a cell type the reference does not have
    with pytest.warns(UserWarning, match="have no label"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="label", use_rep="X", min_confidence=0.99
        )
    assert set(query.obs["label_pred"]) <= {"a", "b", "Unknown"}
    assert list(query.obs["label_pred"].cat.categories) == ["a", "b", "Unknown"]


def test_classifier_method(trained_model, ref_query):
    reference, query = ref_query
    clf = scssl.model.SSLClassifier.from_encoder(trained_model, reference, "cell_type")
    clf.train(max_epochs=2, enable_progress_bar=False)
    scssl.tl.transfer_labels(query, None, labels_key="cell_type", model=clf, method="classifier")
    proba = clf.predict(query, soft=True)
    np.testing.assert_allclose(query.obs["cell_type_confidence"], proba.max(1), rtol=1e-5)
    np.testing.assert_array_equal(query.obs["cell_type_pred"].astype(str), clf.predict(query))


def _spy_on_pretraining(monkeypatch, epochs: int) -> list:
    """Keep every encoder that transfer_labels pretrains, pretrained for ``epochs`` epochs.

    Epochs instead of the time asked for, so that a busy machine does not train less.
    """
    import scssl.tl._transfer as transfer

    encoders, pretrain = [], transfer.pretrain_encoder

    def spy(*args, **kwargs):
        kwargs.update(pretrain_time=None, pretrain_epochs=epochs)
        encoders.append(pretrain(*args, **kwargs))
        return encoders[-1]

    monkeypatch.setattr(transfer, "pretrain_encoder", spy)
    return encoders


def _annotate_by_training(ref_query, monkeypatch, **options):
    """transfer_labels without a model (3 s of pretraining asked, 30 epochs run; copy=True).

    Checks that the reference is untouched and every label is a reference type; returns the
    annotated copy, its predicted labels and the encoders pretrained.
    """
    reference, query = ref_query
    encoders = _spy_on_pretraining(monkeypatch, epochs=30)  # about 3 s on 2 idle cores
    state = _deep_state(reference)
    annotated = scssl.tl.transfer_labels(
        query,
        reference,
        labels_key="cell_type",
        batch_key="stim",
        pretrain_time="00:00:00:03",
        copy=True,
        **options,
    )
    _assert_same(reference, state)
    predicted = annotated.obs["cell_type_pred"].astype(str)
    assert set(predicted) <= set(reference.obs["cell_type"].astype(str))
    return annotated, predicted, encoders


def test_classifier_method_names_rare_types_once_in_the_users_column(ref_query, monkeypatch):
    reference, query = ref_query
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(str)
    reference.obs.iloc[:2, reference.obs.columns.get_loc("cell_type")] = "Rare"
    with pytest.warns(UserWarning) as record:
        _annotate_by_training((reference, query), monkeypatch, method="classifier")
    rare = [w for w in record if "fewer than 3 labelled cells" in str(w.message)]
    assert len(rare) == 1 and rare[0].filename == __file__
    assert "reference.obs['cell_type']" in str(rare[0].message)


@pytest.mark.parametrize("fallback", [False, True])
def test_classifier_method_trains_the_workflow_without_a_model(ref_query, monkeypatch, fallback):
    import scssl.tl._transfer as transfer
    from scssl.model import TRANSFER_LABELS_KEY, query_positions, reference_positions

    _, query = ref_query
    monkeypatch.setattr(transfer, "MIN_KNN_AGREEMENT", 1.01)  # every agreement is below it
    metrics, vote = [], transfer.knn_vote

    def spy(*args, **kwargs):
        metrics.append(kwargs.get("metric", "euclidean"))  # knn_vote's default
        return vote(*args, **kwargs)

    monkeypatch.setattr(transfer, "knn_vote", spy)
    options = {} if fallback else {"knn_fallback": False, "seed": 1}
    with pytest.warns(UserWarning, match="only .*% of the query cells") as record:
        annotated, predicted, encoders = _annotate_by_training(
            ref_query, monkeypatch, method="classifier", **options
        )
    written = [str(w.message) for w in record if "are written instead" in str(w.message)]
    assert len(written) == int(fallback)  # and with the vote it names
    assert not written or "(cosine distance, k=5)" in written[0]
    # the check votes with the Euclidean distance, the fallback with the cosine
    assert metrics == (["euclidean", "cosine"] if fallback else ["euclidean"])
    if not fallback:
        assert scvi.settings.seed == 1  # fine-tuning ran with the seed asked
    assert "cell_type_pred" not in query.obs  # copy=True leaves the query alone
    confidence = annotated.obs["cell_type_confidence"].to_numpy()
    assert ((confidence > 0) & (confidence <= 1)).all()
    uns = annotated.uns["cell_type_pred"]
    params = uns["params"]
    assert params["pretrain_time"] == "00:00:00:03" and params["batch_key"] == "stim"
    # the workflow's pretraining: no centering, the study's uniform reconstruction loss
    assert params["encoder_kwargs"] == dict(scssl.model.CLASSIFIER_ENCODER_KWARGS)
    assert encoders[0].module.reconstruction_gene_weights == "uniform"
    assert params["knn_fallback"] is fallback  # True by default, False asked
    assert params["seed"] == (0 if fallback else 1)
    assert not encoders[0].module.batch_centering and encoders[0].summary_stats.n_batch == 2
    assert 0 <= uns["knn_agreement"] <= 1
    assert uns["labels_from"] == ("knn" if fallback else "classifier")
    if fallback:  # the cosine vote of 5 reference cells in the pretrained embedding
        encoder = encoders[0]
        latent = encoder.get_latent_representation()
        labels = encoder.adata.obs[TRANSFER_LABELS_KEY].astype(str).to_numpy()
        reference_cells = reference_positions(encoder)
        expected, _ = scssl.benchmark.knn_transfer(
            latent[reference_cells],
            labels[reference_cells],
            latent[query_positions(encoder)],
            metric="cosine",
        )
        np.testing.assert_array_equal(predicted.to_numpy(), expected)
    # shares of 5 votes after the fallback, calibrated probabilities without it
    shares = np.isin(np.round(confidence * 5, 4), [1, 2, 3, 4, 5])
    assert shares.all() if fallback else not shares.all()
    with pytest.raises(ValueError, match="labelled reference"):
        scssl.tl.transfer_labels(query, None, labels_key="cell_type", method="classifier")


def test_pretrain_time_none_and_the_seed_reach_the_pretraining(ref_query, monkeypatch):
    import scssl.tl._transfer as transfer

    asked, pretrain = [], transfer.pretrain_encoder

    def spy(*args, **kwargs):
        asked.append((kwargs["pretrain_time"], kwargs["seed"]))
        return pretrain(*args, **{**kwargs, "pretrain_epochs": 3})

    monkeypatch.setattr(transfer, "pretrain_encoder", spy)
    reference, query = ref_query
    annotated = scssl.tl.transfer_labels(
        query, reference, labels_key="cell_type", pretrain_time=None, seed=3, copy=True
    )
    assert asked == [(None, 3)]  # None: no time limit, the epochs bound the pretraining
    params = annotated.uns["cell_type_pred"]["params"]
    assert params["pretrain_time"] is None and params["seed"] == 3


def test_knn_method_pretrains_an_encoder_without_a_model(ref_query, monkeypatch, tmp_path):
    _, query = ref_query
    annotated, predicted, encoders = _annotate_by_training(ref_query, monkeypatch, metric="cosine")
    confidence = annotated.obs["cell_type_confidence"].to_numpy()
    assert ((confidence >= 1 / 5) & (confidence <= 1)).all()  # share of 5 votes
    uns = annotated.uns["cell_type_pred"]
    assert uns["k"] == 5 and uns["search"] == "exact"
    params = uns["params"]
    assert params["model"] == "SSLEncoder (trained by pretrain_encoder)"
    assert params["encoder_kwargs"] == {"reconstruction_gene_weights": "inverse_sd"}
    assert params["metric"] == "cosine"
    assert encoders[0].module.batch_centering  # the encoder's default, kept for kNN
    assert encoders[0].module.reconstruction_gene_weights == "inverse_sd"
    truth = query.obs["cell_type"].astype(str).to_numpy()
    # 30 epochs of pretraining: 0.63 at 32 epochs; one type for every cell scores about 0.05
    assert macro_f1(truth, predicted.to_numpy()) > 0.4
    annotated.write_h5ad(tmp_path / "annotated.h5ad")  # the params in uns can be saved
    reread = ad.read_h5ad(tmp_path / "annotated.h5ad")
    assert reread.uns["cell_type_pred"]["params"]["model"] == params["model"]
    with pytest.raises(ValueError, match="labelled reference"):
        scssl.tl.transfer_labels(query, None, labels_key="cell_type")


def test_transfer_labels_errors(trained_model, ref_query):
    reference, query = ref_query
    with pytest.raises(KeyError, match="labels_key"):
        scssl.tl.transfer_labels(query, reference, labels_key="celltype", model=trained_model)
    with pytest.raises(KeyError, match="labels_key"):  # before any training
        scssl.tl.transfer_labels(query, reference, labels_key="celltype")
    with pytest.raises(KeyError, match="use_rep"):
        scssl.tl.transfer_labels(query, reference, labels_key="cell_type", use_rep="X_nope")
    with pytest.raises(ValueError, match="method"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="cell_type", model=trained_model, method="svm"
        )
    with pytest.raises(ValueError, match="weights"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="cell_type", model=trained_model, weights="x"
        )
    with pytest.raises(ValueError, match="metric"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="cell_type", model=trained_model, metric="l1"
        )
    with pytest.raises(ValueError, match="min_confidence"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="cell_type", model=trained_model, min_confidence=2
        )
    with pytest.raises(ValueError, match="SSLClassifier"):
        scssl.tl.transfer_labels(
            query, reference, labels_key="cell_type", model=trained_model, method="classifier"
        )


def test_each_key_keeps_its_uns_and_options_are_keyword_only():
    rng = np.random.default_rng(2)
    reference = ad.AnnData(np.zeros((40, 1)), obsm={"X": rng.normal(size=(40, 3))})
    reference.obs["label"] = np.array(["a", "b"] * 20)
    query = ad.AnnData(np.zeros((8, 1)), obsm={"X": rng.normal(size=(8, 3))})
    scssl.tl.transfer_labels(query, reference, labels_key="label", use_rep="X", k=3)
    scssl.tl.transfer_labels(
        query, reference, labels_key="label", use_rep="X", key_added="w", weights="distance"
    )
    scssl.tl.transfer_labels(
        query, reference, labels_key="label", use_rep="X", key_added="c", metric="cosine"
    )
    expected, _ = scssl.benchmark.knn_transfer(
        reference.obsm["X"], reference.obs["label"], query.obsm["X"], metric="cosine"
    )
    np.testing.assert_array_equal(query.obs["c_pred"].astype(str), expected)
    assert query.uns["c_pred"]["params"]["metric"] == "cosine"
    assert query.uns["label_pred"]["params"]["metric"] == "euclidean"
    assert query.uns["label_pred"]["params"]["weights"] == "uniform"
    assert query.uns["label_pred"]["params"]["k"] == 3
    assert query.uns["w_pred"]["params"]["weights"] == "distance"
    assert query.uns["w_pred"]["params"]["key_added"] == "w"
    with pytest.raises(TypeError, match="positional"):
        scssl.tl.transfer_labels(query, reference, "label", use_rep="X")


def test_knn_agreement_warns_when_the_classifier_and_knn_disagree():
    from scssl.tl._transfer import check_knn_agreement

    knn = np.array(["B", "T", "T", "NK", "B"] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_knn_agreement(knn.copy(), knn) == 1.0
        most = knn.copy()
        most[:4] = "Mono"  # 16 of 20 agree: 0.8, not below
        assert check_knn_agreement(most, knn) == pytest.approx(0.8)
    fewer = knn.copy()
    fewer[:5] = "Mono"
    advice = r"only 75% of the query cells.*method='knn'"
    with pytest.warns(UserWarning, match=advice):
        assert check_knn_agreement(fewer, knn) == pytest.approx(0.75)
    with pytest.warns(UserWarning, match="are written instead"):
        check_knn_agreement(fewer, knn, knn_fallback=True)
    with pytest.warns(UserWarning) as record:
        check_knn_agreement(fewer, knn)
    assert "written instead" not in str(record[0].message)


def test_training_reads_counts_from_a_layer_and_checks_before_pretraining(ref_query, monkeypatch):
    import scanpy as sc

    reference, query = ref_query
    for adata in (reference, query):  # the scanpy tutorial's state: counts kept, .X normalised
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
    encoders = _spy_on_pretraining(monkeypatch, epochs=1)
    with pytest.raises(ValueError, match=r"reference\.X holds non-integer values.*layer='counts'"):
        scssl.tl.transfer_labels(query, reference, labels_key="cell_type", copy=True)
    annotated = scssl.tl.transfer_labels(
        query, reference, labels_key="cell_type", layer="counts", copy=True
    )
    assert annotated.uns["cell_type_pred"]["params"]["layer"] == "counts"
    assert len(encoders) == 1 and encoders[0].registry_["setup_args"]["layer"] == "counts"
    # the encoder reads the layer of the user's data when reused, as it was trained
    again = scssl.tl.transfer_labels(
        query, reference, labels_key="cell_type", model=encoders[0], copy=True
    )
    assert again.obs["cell_type_pred"].notna().all()
    single = reference.copy()
    single.obs["cell_type"] = "B"
    with pytest.raises(ValueError, match="one cell type \\('B'\\); a classifier needs"):
        scssl.tl.transfer_labels(
            query, single, labels_key="cell_type", method="classifier", layer="counts"
        )
    assert len(encoders) == 1  # refused before any pretraining
