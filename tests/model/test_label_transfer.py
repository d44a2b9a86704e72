"""The label-transfer workflow: transfer_data, pretrain_encoder, train_classifier."""

import warnings

import numpy as np
import pytest
import scanpy
import scvi

import scssl
from scssl.benchmark import macro_f1
from scssl.model import (
    TRANSFER_LABELS_KEY,
    finetune_classifier,
    pretrain_encoder,
    query_positions,
    reference_positions,
    train_classifier,
    transfer_data,
)

SMALL = {"n_hidden": (64,), "n_latent": 16}


@pytest.fixture
def ref_query(kang_demo):
    reference = kang_demo[kang_demo.obs["stim"] == "CTRL"][:500].copy()
    query = kang_demo[kang_demo.obs["stim"] == "STIM"][:400].copy()
    return reference, query


def test_transfer_data_keeps_shared_genes_and_hides_the_query_labels(ref_query):
    reference, query = ref_query
    query = query[:, query.var_names[5:]].copy()  # the query lacks 5 genes
    before = (reference.X.copy(), query.X.copy(), reference.obs.copy(), query.obs.copy())
    cells = transfer_data(reference, query, "cell_type", batch_key="stim")
    assert cells.shape == (900, reference.n_vars - 5)
    labels = cells.obs[TRANSFER_LABELS_KEY].astype(str).to_numpy()
    assert (labels[500:] == "Unknown").all()
    np.testing.assert_array_equal(labels[:500], reference.obs["cell_type"].astype(str))
    assert set(cells.obs["stim"]) == {"CTRL", "STIM"}  # the user's batch column
    assert (reference.X != before[0]).nnz == 0 and (query.X != before[1]).nnz == 0
    assert reference.obs.equals(before[2]) and query.obs.equals(before[3])
    without_batch = transfer_data(reference, query, "cell_type")
    assert set(without_batch.obs["_scssl_batch"]) == {"reference", "query"}


def test_workflow_models_read_the_users_layer_and_batch_column(ref_query, tmp_path):
    """The scanpy tutorial's state: log-normalised .X, counts in layers["counts"]."""
    reference, query = ref_query
    for part in (reference, query):
        part.layers["counts"] = part.X.copy()
        scanpy.pp.normalize_total(part)
        scanpy.pp.log1p(part)
    options = {"n_top_genes": 200, "pretrain_time": None, "pretrain_epochs": 2}
    encoder = pretrain_encoder(
        reference, query, "cell_type", batch_key="stim", layer="counts", **options
    )
    assert encoder.adata.X is None and "counts" in encoder.adata.layers
    assert encoder.registry_["setup_args"]["batch_key"] == "stim"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latent = encoder.get_latent_representation(query)
    assert not [str(w.message) for w in caught if w.filename == __file__]  # scssl's: none
    np.testing.assert_allclose(latent, encoder.get_latent_representation()[500:], atol=1e-5)
    classifier = finetune_classifier(encoder, train_kwargs={"max_epochs": 1})
    predicted = classifier.predict(query)
    assert len(predicted) == query.n_obs
    classifier.save(tmp_path / "clf")
    plain = query.copy()
    del plain.obs["cell_type"]  # loading needs no labels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = scssl.model.SSLClassifier.load(tmp_path / "clf", plain)
    assert not [w for w in caught if "Missing labels key" in str(w.message)]  # scvi-tools'
    np.testing.assert_array_equal(loaded.predict(plain), predicted)


def test_a_workflow_model_loads_cells_with_numeric_batches(ref_query, tmp_path):
    reference, query = ref_query
    for part in (reference, query):
        part.obs["lane"] = (part.obs["stim"] == "STIM").astype(int)  # 0 / 1
    encoder = pretrain_encoder(
        reference, query, "cell_type", batch_key="lane", n_top_genes=200, pretrain_time=None,
        pretrain_epochs=1, encoder_kwargs={"batch_centering": False},
    )  # fmt: skip
    classifier = finetune_classifier(encoder, train_kwargs={"max_epochs": 1})
    classifier.save(tmp_path / "clf")
    loaded = scssl.model.SSLClassifier.load(tmp_path / "clf", query)  # ints, the model's "1"
    np.testing.assert_array_equal(loaded.predict(query), classifier.predict(query))


def test_reserved_column_names_are_not_used_for_the_batches():
    from scssl.model._label_transfer import BATCH, batch_column

    assert batch_column("stim") == "stim" and batch_column(None) == BATCH
    for reserved in (TRANSFER_LABELS_KEY, "_scvi_batch", "_scvi_labels"):
        assert batch_column(reserved) == BATCH


def test_transfer_data_keeps_reference_cells_without_a_label_as_unlabelled(ref_query):
    reference, query = ref_query
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(object)
    reference.obs.iloc[:10, reference.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.warns(UserWarning, match="10 reference cells have no label"):
        cells = transfer_data(reference, query, "cell_type")
    labels = cells.obs[TRANSFER_LABELS_KEY].astype(str).to_numpy()
    assert (labels[:10] == "Unknown").all() and (labels[10:500] != "Unknown").all()
    reference.obs["cell_type"] = np.nan
    with pytest.raises(ValueError, match="no labelled cell"):
        transfer_data(reference, query, "cell_type")
    with pytest.raises(KeyError, match="labels_key='celltype'"):
        transfer_data(reference, query, "celltype")


def test_transfer_data_checks_each_dataset_and_names_it(ref_query):
    reference, query = ref_query
    bad = query.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data[:3] = -1.0
    with pytest.raises(ValueError, match=r"query\.X contains 3 negative values.*layer='counts'"):
        transfer_data(reference, bad, "cell_type")
    bad.X.data[:3] = np.nan  # every NaN counted, not only those of the genes kept
    with pytest.raises(ValueError, match=r"query\.X contains 3 NaN"):
        transfer_data(reference, bad, "cell_type")
    with pytest.raises(KeyError, match=r"batch_key='stim' is not a column of query\.obs"):
        transfer_data(reference, _without(query, "stim"), "cell_type", batch_key="stim")
    gaps = reference.copy()
    gaps.obs["stim"] = gaps.obs["stim"].astype(object)
    gaps.obs.iloc[:4, gaps.obs.columns.get_loc("stim")] = np.nan
    with pytest.raises(ValueError, match=r"reference\.obs\['stim'\] \(batch_key\) has 4"):
        transfer_data(gaps, query, "cell_type", batch_key="stim")


def _without(adata, column):
    adata = adata.copy()
    del adata.obs[column]
    return adata


def test_transfer_data_reads_the_first_of_repeated_genes_and_warns_on_few_shared(ref_query):
    reference, query = ref_query
    names = query.var_names.to_numpy().copy()
    names[1] = names[0]
    query.var_names = names
    with pytest.warns(UserWarning, match="query.var_names has 1 duplicated gene names"):
        cells = transfer_data(reference, query, "cell_type")
    assert cells.n_vars == reference.n_vars - 1 and cells.var_names.is_unique
    first = reference.var_names[0]
    repeated = cells[500:, first].X.toarray().ravel()  # the query's first column of the name
    np.testing.assert_array_equal(repeated, query.X[:, 0].toarray().ravel())
    few = query.copy()  # another naming of all but 5 genes
    few.var_names = [*reference.var_names[:5], *(f"g{i}" for i in range(query.n_vars - 5))]
    with pytest.warns(UserWarning, match="share 5 genes, fewer than 50% of the smaller"):
        transfer_data(reference, few, "cell_type")


def test_a_classifier_needs_two_cell_types_before_any_training(ref_query):
    reference, query = ref_query
    reference.obs["cell_type"] = "T"
    with pytest.raises(ValueError, match=r"has one cell type \('T'\); a classifier needs"):
        train_classifier(reference, query, "cell_type", pretrain_time="00:00:00:00")
    with pytest.warns(UserWarning, match="every query cell gets that label"):
        transfer_data(reference, query, "cell_type")


def test_rare_cell_types_are_named_in_the_users_column_before_pretraining(ref_query):
    reference, query = ref_query
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(str)
    reference.obs.iloc[:2, reference.obs.columns.get_loc("cell_type")] = "Rare"
    with pytest.warns(UserWarning, match=r"reference\.obs\['cell_type'\] has cell types") as caught:
        train_classifier(
            reference,
            query,
            "cell_type",
            n_top_genes=200,
            pretrain_time=None,
            pretrain_epochs=1,
            encoder_kwargs=SMALL,
            train_kwargs={"max_epochs": 1},
        )
    rare = [w for w in caught if "fewer than 3 labelled cells" in str(w.message)]
    assert len(rare) == 1 and "'Rare' (2)" in str(rare[0].message)
    assert rare[0].filename == __file__
    assert not any("_scssl_labels" in str(w.message) for w in caught)
    # the steps one by one: fine-tuning still names them (by the workflow's column)
    encoder = pretrain_encoder(
        reference, query, "cell_type", n_top_genes=200, pretrain_time=None, pretrain_epochs=1
    )
    with pytest.warns(UserWarning, match=r"'_scssl_labels'\] has cell types with fewer"):
        finetune_classifier(encoder, train_kwargs={"max_epochs": 1})


def test_transfer_data_without_shared_genes_says_so(ref_query):
    reference, query = ref_query
    query.var_names = [f"other{i}" for i in range(query.n_vars)]
    with pytest.raises(ValueError, match="share no gene names"):
        transfer_data(reference, query, "cell_type")


def test_train_classifier_annotates_the_query(ref_query):
    reference, query = ref_query
    classifier = train_classifier(
        reference,
        query,
        "cell_type",
        batch_key="stim",
        n_top_genes=500,
        pretrain_time=None,
        pretrain_epochs=20,
        encoder_kwargs=SMALL,
        train_kwargs={"max_epochs": 10},
    )
    # the workflow registers the batch without centring it; fine-tuning's adversary uses it
    assert classifier.summary_stats.n_batch == 2 and not classifier.module.batch_centering
    assert classifier.module.batch_adversary_weight > 0
    positions = query_positions(classifier)
    assert len(positions) == query.n_obs
    np.testing.assert_array_equal(reference_positions(classifier), np.arange(reference.n_obs))
    assert classifier.adata.n_vars == 500
    predicted = classifier.predict(indices=positions)
    assert set(predicted) <= set(reference.obs["cell_type"].astype(str))
    f1 = macro_f1(query.obs["cell_type"].astype(str).to_numpy(), predicted)
    # 20 + 10 epochs of a small model: 0.44-0.54 over seeds 0-2 (with batch centering
    # 0.57-0.64); one type for every cell scores about 0.05
    assert f1 > 0.4, f1
    assert classifier.calibration_["ece_after"] <= classifier.calibration_["ece_before"] + 1e-6


def test_pretrain_encoder_on_the_reference_alone(ref_query):
    reference, _ = ref_query
    scvi.settings.seed = 0
    encoder = scssl.model.pretrain_encoder(
        reference,
        None,
        "cell_type",
        n_top_genes=300,
        pretrain_time=None,
        pretrain_epochs=2,
        encoder_kwargs=SMALL,
    )
    assert encoder.is_trained and encoder.adata.shape == (500, 300)
    np.testing.assert_array_equal(reference_positions(encoder), np.arange(500))
    assert len(query_positions(encoder)) == 0
    assert encoder.summary_stats.n_batch == 1  # reference alone: one batch, none registered
    assert (encoder.adata.obs[TRANSFER_LABELS_KEY] != "Unknown").all()


def test_pretrain_encoder_weights_genes_for_the_masked_squared_error_only(ref_query):
    reference, _ = ref_query
    options = {"n_top_genes": 300, "pretrain_time": None, "pretrain_epochs": 1}
    masked = scssl.model.pretrain_encoder(reference, None, "cell_type", **options)
    assert masked.module.reconstruction_gene_weights == "inverse_sd"  # zero-shot's default
    study = scssl.model.pretrain_encoder(
        reference,
        None,
        "cell_type",
        encoder_kwargs={"reconstruction_gene_weights": "uniform"},
        **options,
    )
    assert study.module.reconstruction_gene_weights == "uniform"
    # a contrastive pretext has no reconstruction to weight: the default does not apply
    contrastive = scssl.model.pretrain_encoder(
        reference, None, "cell_type", encoder_kwargs={"pretext": "barlow_twins"}, **options
    )
    assert contrastive.module.pretext == "barlow_twins"
    # nor with the negative binomial, with which the weights lowered kNN on pbmc_3tech
    counts = scssl.model.pretrain_encoder(
        reference, None, "cell_type", encoder_kwargs={"likelihood": "nb"}, **options
    )
    assert counts.module.reconstruction_gene_weights == "uniform"


def test_no_labelled_cell_or_only_unknown_is_a_clear_error(ref_query):
    reference, query = ref_query
    reference.obs["cell_type"] = np.nan
    with pytest.raises(ValueError, match="has no labelled cell"):
        train_classifier(reference, query, "cell_type")
    reference.obs["cell_type"] = ["B"] * 250 + ["Unknown"] * 250  # "Unknown" is no cell type
    with pytest.raises(ValueError, match=r"one cell type \('B'\)"):
        train_classifier(reference, query, "cell_type")


def test_transfer_data_reads_backed_datasets_and_warns_at_the_callers_line(ref_query, tmp_path):
    import anndata as ad

    reference, query = ref_query
    names = query.var_names.to_numpy().copy()
    names[1] = names[0]
    query.var_names = names
    reference.write_h5ad(tmp_path / "reference.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    backed = [ad.read_h5ad(tmp_path / f"{n}.h5ad", backed="r") for n in ("reference", "query")]
    with pytest.warns(UserWarning, match="query.var_names has 1 duplicated") as caught:
        cells = transfer_data(*backed, "cell_type")
    assert caught[0].filename == __file__  # the user's line, not scssl's
    in_memory = transfer_data(reference, query, "cell_type")
    assert (cells.X != in_memory.X).nnz == 0 and cells.var_names.equals(in_memory.var_names)
