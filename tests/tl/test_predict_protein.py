"""scssl.tl.predict_protein: predictions written to a MuData modality or an AnnData's obsm."""

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi

import scssl
from scssl.model import SSLProteinPredictor

PROTEINS = ["CD3", "CD19", "CD14", "CD56"]


def _synthetic_citeseq(n_cells: int = 240, n_genes: int = 120, seed: int = 0):
    """RNA counts and protein counts that depend on the RNA.

    A protein name is also a gene name and a gene name is duplicated, as in real exports: the
    new modality must still be added to the MuData.
    """
    rng = np.random.default_rng(seed)
    programme = rng.integers(0, 4, size=n_cells)
    rna = rng.poisson(rng.gamma(0.6, 2.0, size=(4, n_genes))[programme]).astype(np.float32)
    loadings = rng.normal(0.0, 1.0, size=(4, len(PROTEINS)))
    protein = rng.poisson(np.exp(2.0 + loadings[programme])).astype(np.float32)
    genes = [f"GENE{i}" for i in range(n_genes)]
    genes[1] = "CD19"
    genes[7] = genes[6]
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.MuData(
            {
                "rna": ad.AnnData(
                    sp.csr_matrix(rna), obs=obs.copy(), var=pd.DataFrame(index=genes)
                ),
                "prot": ad.AnnData(
                    sp.csr_matrix(protein), obs=obs.copy(), var=pd.DataFrame(index=PROTEINS)
                ),
            }
        )


@pytest.fixture(scope="module")
def citeseq_model():
    """A predictor trained briefly on synthetic CITE-seq data, and the data."""
    mdata = _synthetic_citeseq()
    scvi.settings.seed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicated gene names are warned about
        SSLProteinPredictor.setup_mudata(mdata)
    model = SSLProteinPredictor(mdata, n_hidden=(32,), n_latent=8, n_hidden_head=(16,))
    model.train(max_epochs=3, batch_size=64, enable_progress_bar=False)
    return model, mdata


def _mudata_rna_only(rna) -> md.MuData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.MuData({"rna": rna.copy()})


def test_tl_predict_protein_mudata_and_anndata(citeseq_model):
    model, citeseq = citeseq_model
    rna = citeseq.mod["rna"][:40].copy()
    rna_before = rna.X.copy()
    query = _mudata_rna_only(rna)
    assert scssl.tl.predict_protein(query, model) is None
    assert "prot_pred" in query.mod
    assert list(query["prot_pred"].var_names) == PROTEINS
    assert query["prot_pred"].shape == (40, len(PROTEINS))
    expected = model.predict_protein(rna)
    np.testing.assert_allclose(query["prot_pred"].X, expected.to_numpy(), atol=1e-6)
    params = query.uns["prot_pred"]["params"]
    assert params["key_added"] == "prot_pred" and params["proteins"] == PROTEINS
    assert query["prot_pred"].uns["prot_pred"]["params"] == params  # the modality carries it too
    assert (query.mod["rna"].X != rna_before).nnz == 0
    with pytest.raises(ValueError, match="RNA modality"):
        scssl.tl.predict_protein(query, model, key_added="rna")

    adata = rna.copy()
    copied = scssl.tl.predict_protein(adata, model, key_added="proteins", copy=True)
    assert "proteins" not in adata.obsm
    frame = copied.obsm["proteins"]
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == PROTEINS
    assert list(frame.index) == list(adata.obs_names)
    assert copied.uns["proteins"]["alignment"]["share"] == 1.0


def test_tl_predict_protein_errors_and_keyword_only_options(citeseq_model):
    model, citeseq = citeseq_model
    rna = citeseq.mod["rna"][:10].copy()
    with pytest.raises(TypeError, match="MuData or an AnnData"):
        scssl.tl.predict_protein(rna.X, model)
    with pytest.raises(TypeError, match="SSLProteinPredictor"):
        scssl.tl.predict_protein(rna, object())
    with pytest.raises(TypeError, match="positional"):
        scssl.tl.predict_protein(rna, model, "prot_pred")
    scssl.tl.predict_protein(rna, model, key_added="X_prot")
    assert "X_prot" in rna.obsm and rna.uns["prot"]["params"]["key_added"] == "X_prot"


def test_mudata_notices_about_scssl_own_objects_stay_hidden(citeseq_model, tmp_path):
    model, citeseq = citeseq_model
    model.save(tmp_path / "model")
    rna = citeseq.mod["rna"][:40].copy()
    query = _mudata_rna_only(rna[:, ::-1].copy())  # other gene order: aligned in a new MuData
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = SSLProteinPredictor.load(tmp_path / "model")  # on a placeholder MuData
        scssl.tl.predict_protein(query, loaded)
    assert not [str(w.message) for w in caught if "mudata" in w.filename]
