import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from scipy import stats

import scssl
from scssl.benchmark import metrics
from scssl.model import SSLProteinPredictor

SMALL = {"n_hidden": (32,), "n_latent": 8, "n_hidden_head": (16,)}
PROTEINS = ["CD3", "CD19", "CD14", "CD56"]


def _synthetic_citeseq(n_cells: int = 240, n_genes: int = 120, seed: int = 0):
    """RNA counts and protein counts that depend on the RNA, two batches."""
    rng = np.random.default_rng(seed)
    programme = rng.integers(0, 4, size=n_cells)
    means = rng.gamma(0.6, 2.0, size=(4, n_genes))
    rna = rng.poisson(means[programme]).astype(np.float32)
    loadings = rng.normal(0.0, 1.0, size=(4, len(PROTEINS)))
    protein = rng.poisson(np.exp(2.0 + loadings[programme])).astype(np.float32)
    genes = [f"GENE{i}" for i in range(n_genes)]
    genes[1] = "CD19"  # a protein name that is also a gene name
    genes[7] = genes[6]  # a duplicated gene name, as in real exports
    obs = pd.DataFrame(
        {"batch": np.repeat(["a", "b"], n_cells // 2)}, index=[f"c{i}" for i in range(n_cells)]
    )
    rna_ad = ad.AnnData(sp.csr_matrix(rna), obs=obs.copy(), var=pd.DataFrame(index=genes))
    prot_ad = ad.AnnData(
        sp.csr_matrix(protein), obs=obs.copy(), var=pd.DataFrame(index=list(PROTEINS))
    )
    return rna_ad, prot_ad


def _mudata(rna, prot) -> md.MuData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData({"rna": rna, "prot": prot})
    if "batch" in rna.obs:
        mdata.obs["batch"] = rna.obs["batch"].to_numpy()
    return mdata


@pytest.fixture
def citeseq():
    """A small synthetic CITE-seq MuData (rna: 240 x 120 genes, prot: 240 x 4)."""
    return _mudata(*_synthetic_citeseq())


def _train(model, epochs: int = 3):
    model.train(max_epochs=epochs, batch_size=64, enable_progress_bar=False)
    return model


def _setup(mdata, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicated gene names are warned about
        SSLProteinPredictor.setup_mudata(mdata, **kwargs)


@pytest.fixture(scope="module")
def trained_predictor():
    """A predictor trained briefly on its own copy of the synthetic data (read-only tests)."""
    mdata = _mudata(*_synthetic_citeseq())
    scvi.settings.seed = 0
    _setup(mdata)
    return _train(SSLProteinPredictor(mdata, **SMALL))


# ------------------------------------------------------------------ setup validation
def test_setup_mudata_rejects_anndata(citeseq):
    with pytest.raises(TypeError, match="needs a MuData"):
        SSLProteinPredictor.setup_mudata(citeseq.mod["rna"])
    with pytest.raises(TypeError, match="setup_mudata"):
        SSLProteinPredictor.setup_anndata(citeseq.mod["rna"])


def test_setup_mudata_missing_modality(citeseq):
    rna_only = _mudata(citeseq.mod["rna"].copy(), citeseq.mod["prot"].copy())
    del rna_only.mod["prot"]
    with pytest.raises(KeyError, match="protein modality 'prot' is not in the MuData"):
        SSLProteinPredictor.setup_mudata(rna_only)
    with pytest.raises(KeyError, match="'adt'"):
        SSLProteinPredictor.setup_mudata(
            citeseq, modalities={"rna_layer": "rna", "protein_layer": "adt"}
        )
    with pytest.raises(ValueError, match="lacks"):
        SSLProteinPredictor.setup_mudata(citeseq, modalities={"rna_layer": "rna"})


def test_setup_mudata_rejects_non_count_proteins(citeseq):
    prot = citeseq.mod["prot"]
    clr = prot.X.toarray()
    clr = np.log1p(clr) - np.log1p(clr).mean(axis=1, keepdims=True)  # CLR-like, negative
    prot.layers["clr"] = clr
    with pytest.raises(ValueError, match="raw antibody"):
        SSLProteinPredictor.setup_mudata(citeseq, protein_layer="clr")
    prot.layers["lognorm"] = np.log1p(prot.X.toarray())
    with pytest.raises(ValueError, match="non-integer"):
        SSLProteinPredictor.setup_mudata(citeseq, protein_layer="lognorm")
    with pytest.raises(KeyError, match=r"'counts' is not in mdata.mod\['prot'\].layers"):
        SSLProteinPredictor.setup_mudata(citeseq, protein_layer="counts")


def test_setup_mudata_clashing_names(citeseq):
    # Protein names equal to gene names (CD19 in both) are fine ...
    _setup(citeseq)
    # ... duplicated protein names are not.
    prot = citeseq.mod["prot"].copy()
    prot.var_names = ["CD3", "CD3", "CD14", "CD56"]
    clashing = _mudata(citeseq.mod["rna"].copy(), prot)
    with pytest.raises(ValueError, match="duplicated protein names"):
        SSLProteinPredictor.setup_mudata(clashing)
    with pytest.raises(ValueError, match="must differ"):
        SSLProteinPredictor.setup_mudata(
            citeseq, modalities={"rna_layer": "rna", "protein_layer": "rna"}
        )


def test_setup_mudata_other_checks(citeseq):
    with pytest.raises(KeyError, match="batch_key='donor'"):
        SSLProteinPredictor.setup_mudata(citeseq, batch_key="donor")
    with pytest.warns(UserWarning, match="duplicated gene names"):
        SSLProteinPredictor.setup_mudata(citeseq)
    rna, prot = _synthetic_citeseq()
    with pytest.raises(ValueError, match="same cells"):
        SSLProteinPredictor.setup_mudata(_mudata(rna, prot[::-1].copy()))
    empty = prot.copy()
    empty.X = sp.csr_matrix(empty.X)
    empty.X[0] = 0
    empty.X.eliminate_zeros()
    with pytest.warns(UserWarning, match="1 of 240 cells .* no protein at all") as caught:
        SSLProteinPredictor.setup_mudata(_mudata(rna, empty))
    messages = [str(w.message) for w in caught]
    assert not any("embed to the same point" in m for m in messages)
    # a MuData is filtered as a whole, not with scanpy on one modality
    assert any("mdata = mdata[keep]" in m for m in messages), messages
    assert not any("sc.pp.filter_cells" in m for m in messages)


def test_setup_mudata_does_not_modify_matrices(citeseq):
    rna_before = citeseq.mod["rna"].X.copy()
    prot_before = citeseq.mod["prot"].X.copy()
    _setup(citeseq)
    assert (citeseq.mod["rna"].X != rna_before).nnz == 0
    assert (citeseq.mod["prot"].X != prot_before).nnz == 0


# ------------------------------------------------------------------ prediction
def test_prediction_shape_names_and_rna_only_input(trained_predictor, citeseq):
    model = trained_predictor
    assert model.protein_names == PROTEINS
    full = model.predict_protein()
    assert full.shape == (citeseq.n_obs, len(PROTEINS))
    assert list(full.columns) == PROTEINS
    assert list(full.index) == list(citeseq.mod["rna"].obs_names)
    assert np.isfinite(full.to_numpy()).all()

    # RNA-only AnnData with genes in another order: aligned to the model's genes by name. The
    # duplicated gene name (GENE6 twice) is read from its first occurrence for both columns.
    rna = citeseq.mod["rna"][:50].copy()
    pred = model.predict_protein(rna[:, np.r_[100:120, 0:100]].copy())
    first_occurrence = rna.copy()
    values = first_occurrence.X.toarray()
    values[:, 7] = values[:, 6]
    first_occurrence.X = sp.csr_matrix(values)
    expected = model.predict_protein(first_occurrence)
    np.testing.assert_allclose(pred.to_numpy(), expected.to_numpy(), atol=1e-5)
    rows = values[:, 6] == citeseq.mod["rna"].X[:50, 7].toarray().ravel()
    np.testing.assert_allclose(pred.to_numpy()[rows], full.iloc[:50].to_numpy()[rows], atol=1e-5)
    # ... and with genes missing (zero-filled)
    partial = model.predict_protein(rna[:, 10:].copy(), min_overlap=0.5)
    assert partial.shape == (50, len(PROTEINS)) and np.isfinite(partial.to_numpy()).all()
    # RNA-only MuData
    pred_mu = model.predict_protein(_mudata_rna_only(rna))
    np.testing.assert_allclose(pred_mu.to_numpy(), full.iloc[:50].to_numpy(), atol=1e-5)
    counts = model.predict_protein(rna, counts=True)
    assert (counts.to_numpy() >= 0).all()

    # A cell's prediction does not depend on the other cells of its minibatch
    np.testing.assert_allclose(
        model.predict_protein(rna[:7].copy()).to_numpy(), pred_mu.iloc[:7].to_numpy(), atol=1e-5
    )


def _mudata_rna_only(rna) -> md.MuData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.MuData({"rna": rna.copy()})


def test_prediction_errors(trained_predictor, citeseq):
    model = trained_predictor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        no_rna = md.MuData({"gex": citeseq.mod["rna"][:10].copy()})
    with pytest.raises(KeyError, match="no RNA modality 'rna'"):
        model.predict_protein(no_rna)
    other_genes = ad.AnnData(
        sp.csr_matrix(np.ones((5, 30), dtype=np.float32)),
        var=pd.DataFrame(index=[f"OTHER{i}" for i in range(30)]),
    )
    with pytest.raises(ValueError, match="Only 0 of 120 model genes"):
        model.predict_protein(other_genes)
    with pytest.raises(ValueError, match="set up without a batch_key"):
        model.predict_protein(citeseq.mod["rna"][:5].copy(), transform_batch="b1")


def test_learns_the_rna_protein_relationship(citeseq):
    scvi.settings.seed = 0
    _setup(citeseq)
    model = _train(SSLProteinPredictor(citeseq, **SMALL), epochs=8)
    truth = np.log1p(citeseq.mod["prot"].X.toarray())
    scores = metrics.protein_prediction_scores(truth, model.predict_protein().to_numpy())
    assert scores["pearson_mean_per_protein"] > 0.8


# ------------------------------------------------------------------ batches
def test_proteins_missing_in_a_batch_are_masked(citeseq):
    prot = citeseq.mod["prot"]
    values = prot.X.toarray()
    values[prot.obs["batch"].to_numpy() == "b", 0] = 0.0  # CD3 not measured in batch b
    prot.X = sp.csr_matrix(values)
    scvi.settings.seed = 0
    _setup(citeseq, batch_key="batch")
    model = SSLProteinPredictor(citeseq, **SMALL)
    mask = model.module.protein_batch_mask.numpy()
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [0, 1, 1, 1]])

    # The loss ignores CD3 in batch b: changing the prediction there changes nothing.
    module = model.module
    x = torch.from_numpy(citeseq.mod["rna"].X[:4].toarray())
    tensors = {
        "X": x,
        "batch": torch.tensor([[1], [1], [1], [1]]),
        "proteins": torch.from_numpy(values[-4:]),
    }
    inference = module.inference(x)
    generative = module.generative(inference["z"], tensors["batch"])
    loss = module.loss(tensors, inference, generative).loss
    shifted = generative["protein_log1p"].clone()
    shifted[:, 0] += 5.0
    shifted_loss = module.loss(tensors, inference, {"protein_log1p": shifted}).loss
    assert float(shifted_loss) == pytest.approx(float(loss))
    shifted[:, 1] = 100.0  # a measured protein does count
    assert float(module.loss(tensors, inference, {"protein_log1p": shifted}).loss) > float(loss)

    _train(model, epochs=2)
    rna = citeseq.mod["rna"][:10].copy()
    by_batch = model.predict_protein(rna)  # batch read from rna.obs
    as_a = model.predict_protein(rna, transform_batch="a")
    assert by_batch.shape == as_a.shape == (10, 4)
    no_batch = rna.copy()
    del no_batch.obs["batch"]
    with pytest.raises(KeyError, match="transform_batch"):
        model.predict_protein(no_batch)
    with pytest.raises(ValueError, match="not a batch of the model"):
        model.predict_protein(rna, transform_batch="z")


# ------------------------------------------------------------------ encoder reuse
@pytest.fixture
def small_encoder():
    rna, _ = _synthetic_citeseq(seed=1)
    rna.var_names_make_unique()
    scvi.settings.seed = 0
    scssl.model.SSLEncoder.setup_anndata(rna)
    encoder = scssl.model.SSLEncoder(rna, n_hidden=(32,), n_latent=8)
    encoder.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    return encoder


def test_transform_batch_of_a_one_batch_model(citeseq):
    rna, prot = _synthetic_citeseq()
    rna.obs["batch"] = "only"
    mdata = _mudata(rna, prot)
    _setup(mdata, batch_key="batch")
    model = _train(SSLProteinPredictor(mdata, **SMALL), epochs=1)
    same = model.predict_protein(rna[:5].copy(), transform_batch="only")
    pd.testing.assert_frame_equal(same, model.predict_protein(rna[:5].copy()))
    with pytest.raises(ValueError, match="not a batch of the model"):
        model.predict_protein(rna[:5].copy(), transform_batch="other")


def test_from_encoder_aligns_genes_and_copies_weights(small_encoder, citeseq):
    encoder = small_encoder
    # The MuData's genes are shuffled and partly missing relative to the encoder's vocabulary.
    rna = citeseq.mod["rna"][:, np.r_[60:120, 0:50]].copy()
    mdata = _mudata(rna, citeseq.mod["prot"].copy())
    n_vars_before = mdata.mod["rna"].n_vars
    scvi.settings.seed = 0
    model = SSLProteinPredictor.from_encoder(encoder, mdata, n_hidden_head=(16,))
    assert mdata.mod["rna"].n_vars == n_vars_before  # the user's MuData is unchanged
    assert model.gene_vocabulary.symbols == encoder.gene_vocabulary.symbols
    assert model.summary_stats.n_vars == len(encoder.gene_vocabulary)
    assert model.alignment_report_["n_matched"] == 109  # GENE7 (-> "GENE6-1") is not in the data
    for key, value in encoder.module.encoder.state_dict().items():
        torch.testing.assert_close(model.module.encoder.state_dict()[key], value)
    # The encoder is copied, not shared.
    _train(model, epochs=2)
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(
            model.module.encoder.parameters(), encoder.module.encoder.parameters(), strict=True
        )
    )
    assert changed
    assert model.predict_protein(rna[:5].copy()).shape == (5, 4)
    with pytest.raises(TypeError, match="needs a MuData"):
        SSLProteinPredictor.from_encoder(encoder, rna)


def test_from_encoder_frozen(small_encoder, citeseq):
    scvi.settings.seed = 0
    model = SSLProteinPredictor.from_encoder(
        small_encoder, citeseq, freeze_encoder=True, n_hidden_head=(16,)
    )
    before = {k: v.clone() for k, v in model.module.encoder.state_dict().items()}
    head_before = model.module.head[-1].weight.clone()
    _train(model, epochs=2)
    for key, value in model.module.encoder.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert not torch.equal(model.module.head[-1].weight, head_before)


# ------------------------------------------------------------------ save/load, seeds
def test_save_load_round_trip(trained_predictor, citeseq, tmp_path):
    model = trained_predictor
    rna = citeseq.mod["rna"][:30].copy()
    expected = model.predict_protein(rna)
    model.save(tmp_path / "prot", overwrite=True)
    loaded = SSLProteinPredictor.load(str(tmp_path / "prot"), adata=citeseq)
    pd.testing.assert_frame_equal(loaded.predict_protein(rna), expected)
    assert loaded.protein_names == PROTEINS
    assert loaded.gene_vocabulary.symbols == model.gene_vocabulary.symbols


def test_determinism_with_a_seed():
    predictions = []
    for _ in range(2):
        mdata = _mudata(*_synthetic_citeseq())
        scvi.settings.seed = 7
        _setup(mdata)
        model = _train(SSLProteinPredictor(mdata, **SMALL), epochs=2)
        predictions.append(model.predict_protein().to_numpy())
    np.testing.assert_array_equal(predictions[0], predictions[1])


# ------------------------------------------------------------------ real data
def test_real_citeseq_names_and_duplicates(shared_file):
    path = shared_file("pbmc5k_citeseq.h5mu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rna = md.read_h5ad(str(path), "rna")[:300].copy()
        prot = md.read_h5ad(str(path), "prot")[:300].copy()
    assert "CD19" in rna.var_names and "CD19" in prot.var_names
    assert {"EMG1", "SOD2"} <= set(rna.var_names[rna.var_names.duplicated()])
    mdata = _mudata(rna, prot)
    with pytest.warns(UserWarning, match="duplicated gene names"):
        SSLProteinPredictor.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = _train(SSLProteinPredictor(mdata, **SMALL), epochs=1)
    pred = model.predict_protein(_mudata_rna_only(rna))
    assert pred.shape == (300, 8)
    assert list(pred.columns) == list(prot.var_names)
    assert np.isfinite(pred.to_numpy()).all()


# ------------------------------------------------------------------ metrics
def test_protein_metrics_match_scipy():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 4)) + np.arange(4)
    pred = truth + rng.normal(scale=0.5, size=truth.shape)
    assert metrics.pearson_flattened(truth, pred) == pytest.approx(
        stats.pearsonr(truth.ravel(), pred.ravel()).statistic
    )
    per_protein = metrics.pearson_per_protein(truth, pred)
    for j in range(4):
        assert per_protein[j] == pytest.approx(stats.pearsonr(truth[:, j], pred[:, j]).statistic)
    per_cell = metrics.pearson_per_cell(truth, pred)
    assert per_cell[3] == pytest.approx(stats.pearsonr(truth[3], pred[3]).statistic)
    assert metrics.spearman_per_protein(truth, pred)[1] == pytest.approx(
        stats.spearmanr(truth[:, 1], pred[:, 1]).statistic
    )
    assert metrics.spearman_flattened(truth, pred) == pytest.approx(
        stats.spearmanr(truth.ravel(), pred.ravel()).statistic
    )
    assert metrics.mean_squared_error(truth, pred) == pytest.approx(np.mean((truth - pred) ** 2))
    assert metrics.pearson_flattened(truth, truth) == pytest.approx(1.0)


def test_protein_metrics_edge_cases():
    truth = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]}, index=["x", "y", "z"])
    pred = pd.DataFrame({"b": [1.0, 2.0, 2.0], "a": [1.0, 2.0, 4.0]}, index=["x", "y", "z"])
    with pytest.warns(UserWarning, match="constant") as caught:
        scores = metrics.protein_prediction_scores(truth, pred)
    assert all(w.filename == __file__ for w in caught if "constant" in str(w.message))
    assert np.isnan(scores["per_protein"]["b"]["pearson"])
    assert scores["pearson_mean_per_protein"] == pytest.approx(
        stats.pearsonr([1, 2, 3], [1, 2, 4]).statistic
    )
    with pytest.raises(ValueError, match="shape"):
        metrics.pearson_flattened(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        metrics.pearson_per_protein(np.array([[np.nan]]), np.array([[1.0]]))
