"""Issue 15: a clear error for every bad input, safe and exact model files, interruptions.

Every bad-input case asserts the message (the problem and the fix) and that the user's input is
unchanged after the call: matrices equal, no new ``obs`` columns, no ``_scvi_*`` residue in
``obs``/``uns`` (snapshot before, compare after). Tampered files must be refused with a message
naming the file; files whose unpickling would run code must be refused by every loader without
the code running. Round trips of the three models are bit-exact in both file formats.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
from dataclasses import dataclass
from types import SimpleNamespace

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

import scssl
from scssl.checkpoints import UnsafeCheckpointError, load_torch_weights
from scssl.cli import main
from scssl.model import SSLClassifier, SSLEncoder, SSLProteinPredictor

N_GENES = 50
SMALL = {"n_hidden": (16,), "n_latent": 4}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


# =============================================================================== data
def counts_adata(n_cells: int = 60, n_genes: int = N_GENES, seed: int = 0) -> ad.AnnData:
    """Negative-binomial counts (CSR), two batches, three cell types, genes G0..G49."""
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(2, 0.3, size=(n_cells, n_genes)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical((["a", "b"] * n_cells)[:n_cells]),
            "ct": pd.Categorical(rng.choice(["x", "y", "z"], n_cells)),
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var)


def with_counts_layer(adata: ad.AnnData) -> ad.AnnData:
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    return adata


def citeseq(n_cells: int = 60, n_proteins: int = 5, seed: int = 0) -> md.MuData:
    """RNA (as :func:`counts_adata`) and ADT counts of the same cells; batch in ``mdata.obs``."""
    rna = counts_adata(n_cells, seed=seed)
    rng = np.random.default_rng(seed + 1)
    prot = ad.AnnData(
        rng.poisson(5, size=(n_cells, n_proteins)).astype(np.float32),
        obs=pd.DataFrame(index=rna.obs_names),
        var=pd.DataFrame(index=[f"P{i}" for i in range(n_proteins)]),
    )
    mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs["batch"] = rna.obs["batch"].to_numpy()
    return mdata


def edit_matrix(adata: ad.AnnData, cells, genes, value, layer: str | None = None):
    matrix = (adata.X if layer is None else adata.layers[layer]).tolil()
    matrix[cells, genes] = value
    if layer is None:
        adata.X = matrix.tocsr()
    else:
        adata.layers[layer] = matrix.tocsr()
    return adata


# ========================================================================== snapshots
def _copy_matrix(matrix):
    return matrix.copy() if sp.issparse(matrix) else np.array(matrix, copy=True)


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc")


def _same_matrix(a, b) -> bool:
    if type(a) is not type(b) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if sp.issparse(a):
        return (
            np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices)
            and _same_values(a.data, b.data)
        )
    return _same_values(np.asarray(a), np.asarray(b))


def _anndata_state(adata: ad.AnnData) -> dict:
    return {
        "X": _copy_matrix(adata.X),
        "layers": {k: _copy_matrix(v) for k, v in adata.layers.items()},
        "obs": adata.obs.copy(deep=True),
        "var": adata.var.copy(deep=True),
        "uns": sorted(adata.uns),
        "obsm": {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
    }


def _assert_anndata_unchanged(adata: ad.AnnData, state: dict, where: str) -> None:
    assert _same_matrix(adata.X, state["X"]), f"{where}.X changed"
    assert sorted(adata.layers) == sorted(state["layers"]), f"{where}.layers changed"
    for key, value in state["layers"].items():
        assert _same_matrix(adata.layers[key], value), f"{where}.layers[{key!r}] changed"
    assert not [c for c in adata.obs.columns if str(c).startswith("_scvi")], f"{where}.obs"
    assert not [k for k in adata.uns if str(k).startswith("_scvi")], f"{where}.uns residue"
    pd.testing.assert_frame_equal(adata.obs, state["obs"])  # no new or changed columns
    pd.testing.assert_frame_equal(adata.var, state["var"])
    assert sorted(adata.uns) == state["uns"], f"{where}.uns changed"
    assert sorted(adata.obsm) == sorted(state["obsm"]), f"{where}.obsm changed"


class Snapshot:
    """The user's AnnData or MuData before a call, to compare with after it."""

    def __init__(self, data):
        self.data = data
        if isinstance(data, md.MuData):
            self.mods = {k: _anndata_state(v) for k, v in data.mod.items()}
            self.obs = data.obs.copy(deep=True)
            self.uns = sorted(data.uns)
        else:
            self.state = _anndata_state(data)

    def assert_unchanged(self) -> None:
        if isinstance(self.data, md.MuData):
            assert sorted(self.data.mod) == sorted(self.mods)
            for key, state in self.mods.items():
                _assert_anndata_unchanged(self.data.mod[key], state, f"mdata.mod[{key!r}]")
            assert not [c for c in self.data.obs.columns if str(c).startswith("_scvi")]
            assert not [k for k in self.data.uns if str(k).startswith("_scvi")]
            pd.testing.assert_frame_equal(self.data.obs, self.obs)
            assert sorted(self.data.uns) == self.uns
        else:
            _assert_anndata_unchanged(self.data, self.state, "adata")


def message_of(error: BaseException) -> str:
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


# ============================================================================= models
def _train(model, **kwargs):
    model.train(max_epochs=1, early_stopping=False, **QUIET, **kwargs)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small trained models of each kind and their saved directories (read-only)."""
    scvi.settings.seed = 0
    root = tmp_path_factory.mktemp("models")
    data = counts_adata(200)
    SSLEncoder.setup_anndata(data)
    enc = _train(SSLEncoder(data, batch_centering=False, **SMALL))

    layered = with_counts_layer(counts_adata(80, seed=1))
    SSLEncoder.setup_anndata(layered, layer="counts")
    enc_layer = _train(SSLEncoder(layered, **SMALL))

    batched = counts_adata(80, seed=2)
    SSLEncoder.setup_anndata(batched, batch_key="batch")
    enc_batch = _train(SSLEncoder(batched, batch_centering=False, **SMALL))

    clf = _train(SSLClassifier.from_encoder(enc, counts_adata(200, seed=3), labels_key="ct"))
    clf_batch = _train(
        SSLClassifier.from_encoder(
            enc_batch, counts_adata(80, seed=2), labels_key="ct", batch_centering=True
        )
    )
    prot = _train(SSLProteinPredictor.from_encoder(enc, citeseq(120), n_hidden_head=(8,)))
    prot_batch = SSLProteinPredictor.from_encoder(
        enc, citeseq(60, seed=4), n_hidden_head=(8,), batch_key="batch"
    )
    dirs = {}
    for name, model in [
        ("enc", enc),
        ("enc_layer", enc_layer),
        ("enc_batch", enc_batch),
        ("clf", clf),
        ("prot", prot),
    ]:
        dirs[name] = root / name
        model.save(dirs[name])
    exported = scssl.io.export_safetensors(enc, root / "enc_safetensors")
    return SimpleNamespace(
        enc=enc,
        enc_layer=enc_layer,
        enc_batch=enc_batch,
        clf=clf,
        clf_batch=clf_batch,
        prot=prot,
        prot_batch=prot_batch,
        dirs=dirs,
        exported=exported,
    )


# ===================================================================== bad-input cases
@dataclass
class BadInput:
    build: object  # (models, tmp_path) -> (inputs to snapshot, call)
    error: type
    problem: str  # regex: what is wrong
    fix: str  # regex: how to fix it
    warns: bool = False


BAD_INPUTS = []


def bad_input(error, problem, fix, *, warns=False, xfail=None):
    def register(build):
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        BAD_INPUTS.append(
            pytest.param(
                BadInput(build, error, problem, fix, warns), id=build.__name__, marks=marks
            )
        )
        return build

    return register


# ---------------------------------------------------------------------------- values
@bad_input(ValueError, r"adata\.X contains 1 NaN and 0 infinite", r"remove or impute")
def nan_counts(m, tmp):
    a = edit_matrix(counts_adata(), 3, 5, np.nan)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"contains 0 NaN and 1 infinite", r"remove or impute")
def inf_counts(m, tmp):
    a = edit_matrix(counts_adata(), 3, 5, np.inf)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"1 negative values \(minimum -1\)", r"raw counts in adata\.X")
def negative_counts(m, tmp):
    a = edit_matrix(counts_adata(), 3, 5, -1.0)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"non-integer values \(e\.g\. 0\.5\)", r"log_normalized=True")
def non_integer_counts(m, tmp):
    a = edit_matrix(counts_adata(), 3, 5, 0.5)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"declared log-normalised .* raw or scaled counts", r"normalize_total")
def counts_declared_log_normalized(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLEncoder.setup_anndata(a, log_normalized=True)


@bad_input(ValueError, r"1 negative values", r"not scaled or centred")
def scaled_values_declared_log_normalized(m, tmp):
    a = counts_adata()
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))
    a = edit_matrix(a, 0, 0, -0.7)
    return [a], lambda: SSLEncoder.setup_anndata(a, log_normalized=True)


@bad_input(ValueError, r"adata\.X is empty \(0 cells x 50 genes\)", r"filter")
def no_cells(m, tmp):
    a = counts_adata()[:0].copy()
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"adata\.X is empty \(60 cells x 0 genes\)", r"selection or filtering")
def zero_genes(m, tmp):
    a = counts_adata()[:, :0].copy()
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"adata\.X has dtype <U\d+", r"astype\(np\.float32\)")
def string_dtype(m, tmp):
    a = counts_adata()
    a.X = a.X.toarray().astype(str)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"adata\.X has dtype object", r"astype\(np\.float32\)")
def object_dtype(m, tmp):
    a = counts_adata()
    a.X = a.X.toarray().astype(object)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"has dtype complex64", r"numeric matrix")
def complex_dtype(m, tmp):
    a = counts_adata()
    a.X = a.X.toarray().astype(np.complex64)
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"adata\.layers\['counts'\] contains 1 NaN", r"remove or impute")
def nan_in_the_counts_layer(m, tmp):
    a = edit_matrix(with_counts_layer(counts_adata()), 1, 1, np.nan, layer="counts")
    return [a], lambda: SSLEncoder.setup_anndata(a, layer="counts")


@bad_input(ValueError, r"2 negative values", r"raw counts in adata\.X")
def negative_dense_counts(m, tmp):
    a = counts_adata()
    a.X = a.X.toarray()
    a.X[[0, 4], [1, 2]] = -3
    return [a], lambda: SSLEncoder.setup_anndata(a)


@bad_input(ValueError, r"contains 1 NaN", r"remove or impute")
def nan_in_a_query_to_embed(m, tmp):
    a = edit_matrix(counts_adata(), 0, 0, np.nan)
    return [a], lambda: m.enc.get_latent_representation(a)


@bad_input(ValueError, r"non-integer values", r"log_normalized=True")
def non_integer_query_to_classify(m, tmp):
    a = counts_adata()
    a.X = a.X * 0.5
    return [a], lambda: m.clf.predict(a)


@bad_input(ValueError, r"1 NaN", r"remove or impute")
def nan_counts_for_a_classifier(m, tmp):
    a = edit_matrix(counts_adata(), 2, 2, np.nan)
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


@bad_input(ValueError, r"1 negative values", r"raw counts")
def negative_counts_loading_a_model(m, tmp):
    a = edit_matrix(counts_adata(), 2, 2, -2.0)
    return [a], lambda: SSLEncoder.load(m.dirs["enc"], adata=a)


@bad_input(UserWarning, r"2 of 60 cells in adata\.X have no counts", r"filter_cells", warns=True)
def empty_cells_in_a_query(m, tmp):
    a = edit_matrix(counts_adata(), [0, 1], slice(None), 0)
    return [a], lambda: m.enc.get_latent_representation(a)


@bad_input(UserWarning, r"1 of 60 cells .* have no counts", r"filter_cells", warns=True)
def empty_cell_for_a_classifier(m, tmp):
    a = edit_matrix(counts_adata(), [7], slice(None), 0)
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


# ---------------------------------------------------------------------------- shapes
@bad_input(ValueError, r"is empty \(0 cells x 50 genes\)", r"filter")
def no_cells_to_embed(m, tmp):
    a = counts_adata()[:0].copy()
    return [a], lambda: m.enc.get_latent_representation(a)


@bad_input(ValueError, r"Only 0 of 50 model genes", r"min_overlap")
def no_genes_to_embed(m, tmp):
    a = counts_adata()[:, :0].copy()
    return [a], lambda: m.enc.get_latent_representation(a)


# ----------------------------------------------------------------------------- genes
def _duplicated_genes():
    a = counts_adata()
    names = a.var_names.to_numpy().copy()
    names[1] = names[0]
    a.var_names = names
    return a


@bad_input(UserWarning, r"repeats 1 of the model's genes \(e\.g\. G0\)", r"Ensembl IDs", warns=True)
def duplicated_genes_in_a_query(m, tmp):
    a = _duplicated_genes()
    return [a], lambda: m.enc.get_latent_representation(a)


@bad_input(UserWarning, r"repeats 1 of the model's genes", r"one column per gene", warns=True)
def duplicated_genes_mapped_onto_a_reference(m, tmp):
    a = _duplicated_genes()
    return [a], lambda: SSLEncoder.load_query_data(a, m.enc)


def _few_genes():
    a = counts_adata()
    a.var_names = [f"X{i}" for i in range(45)] + [f"G{i}" for i in range(5)]
    return a


_FEW = r"Only 5 of 50 model genes \(10\.0%\)"
_FEW_FIX = r"same gene identifiers.*min_overlap"


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_embed(m, tmp):
    a = _few_genes()
    return [a], lambda: m.enc.get_latent_representation(a)


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_for_a_query_model(m, tmp):
    a = _few_genes()
    return [a], lambda: SSLEncoder.load_query_data(a, m.enc)


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_for_a_saved_query_model(m, tmp):
    a = _few_genes()
    return [a], lambda: SSLEncoder.load_query_data(a, m.dirs["enc"])


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_prepare_a_query(m, tmp):
    a = _few_genes()
    return [a], lambda: SSLEncoder.prepare_query_anndata(a, m.dirs["enc"])


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_classify(m, tmp):
    a = _few_genes()
    return [a], lambda: m.clf.predict(a)


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_fine_tune(m, tmp):
    a = _few_genes()
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_import(m, tmp):
    a = _few_genes()
    return [a], lambda: scssl.io.import_safetensors(m.exported, adata=a)


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_load(m, tmp):
    a = _few_genes()
    return [a], lambda: SSLEncoder.load(m.dirs["enc"], adata=a)


@bad_input(ValueError, _FEW, _FEW_FIX)
def too_few_genes_to_predict_proteins(m, tmp):
    a = _few_genes()
    return [a], lambda: m.prot.predict_protein(a)


@bad_input(ValueError, r"Only 0 of 50 model genes .* matched by gene symbol", r"Ensembl IDs")
def ensembl_ids_for_a_model_of_symbols(m, tmp):
    a = counts_adata()
    a.var_names = [f"ENSG{i + 1:011d}" for i in range(N_GENES)]
    return [a], lambda: m.enc.get_latent_representation(a)


_NO_LAYER = r"layer='counts' is not in adata\.layers \(available: \[\]\)"
_NO_LAYER_FIX = r"adata\.layers\['counts'\] = adata\.X\.copy\(\)"


@bad_input(KeyError, _NO_LAYER, _NO_LAYER_FIX)
def query_without_the_models_layer(m, tmp):
    a = counts_adata()
    return [a], lambda: m.enc_layer.get_latent_representation(a)


@bad_input(KeyError, _NO_LAYER, _NO_LAYER_FIX)
def saved_query_model_without_the_layer(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLEncoder.load_query_data(a, m.dirs["enc_layer"])


@bad_input(KeyError, _NO_LAYER, _NO_LAYER_FIX)
def prepared_query_without_the_layer(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLEncoder.prepare_query_anndata(a, m.dirs["enc_layer"])


@bad_input(KeyError, _NO_LAYER, r"name the layer that holds the raw counts")
def set_up_with_a_missing_layer(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLEncoder.setup_anndata(a, layer="counts")


# ---------------------------------------------------------------------------- labels
def _labels_with_nan():
    a = counts_adata()
    a.obs.loc["c1", "ct"] = np.nan
    return a


@bad_input(ValueError, r"adata\.obs\['ct'\] has 1 missing \(NaN\) labels", r"fillna\('Unknown'\)")
def nan_labels_to_fine_tune(m, tmp):
    a = _labels_with_nan()
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


@bad_input(ValueError, r"1 missing \(NaN\) labels", r"treated as unlabeled")
def nan_labels_set_up(m, tmp):
    a = _labels_with_nan()
    return [a], lambda: SSLClassifier.setup_anndata(a, labels_key="ct")


@bad_input(ValueError, r"has 1 labelled classes \['x'\]", r"needs at least 2 classes")
def one_class_only(m, tmp):
    a = counts_adata()
    a.obs["ct"] = "x"
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


@bad_input(ValueError, r"has 0 labelled classes", r"needs at least 2 classes")
def every_cell_unlabeled(m, tmp):
    a = counts_adata()
    a.obs["ct"] = "Unknown"
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="ct")


@bad_input(KeyError, r"labels_key='cell_type' is not a column", r"columns: \['batch', 'ct'\]")
def labels_key_missing_to_fine_tune(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLClassifier.from_encoder(m.enc, a, labels_key="cell_type")


@bad_input(KeyError, r"labels_key='cell_type' is not a column", r"columns: \['batch', 'ct'\]")
def labels_key_missing_set_up(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLClassifier.setup_anndata(a, labels_key="cell_type")


# --------------------------------------------------------------------------- batches
def _batch_with_nan():
    a = counts_adata()
    a.obs.loc["c3", "batch"] = np.nan
    return a


@bad_input(ValueError, r"adata\.obs\['batch'\] \(batch_key\) has 1 missing \(NaN\)", r"drop")
def nan_batch_set_up(m, tmp):
    a = _batch_with_nan()
    return [a], lambda: SSLEncoder.setup_anndata(a, batch_key="batch")


@bad_input(ValueError, r"has 1 missing \(NaN\)", r"astype\(str\)")
def nan_batch_loading_a_batch_model(m, tmp):
    a = _batch_with_nan()
    return [a], lambda: SSLEncoder.load(m.dirs["enc_batch"], adata=a)


@bad_input(ValueError, r"has 1 missing \(NaN\)", r"drop the cells")
def nan_batch_of_cells_to_classify(m, tmp):
    a = _batch_with_nan()
    return [a], lambda: m.clf_batch.predict(a)


@bad_input(ValueError, r"mdata\.obs\['batch'\] has 1 missing \(NaN\)", r"drop the cells")
def nan_batch_in_a_mudata(m, tmp):
    mdata = citeseq()
    mdata.obs.loc["c2", "batch"] = np.nan
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata, batch_key="batch")


@bad_input(KeyError, r"batch_key='donor' is not a column", r"columns: \['batch', 'ct'\]")
def batch_key_missing_set_up(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLEncoder.setup_anndata(a, batch_key="donor")


@bad_input(KeyError, r"batch_key='batch' is not a column", r"columns: \['ct'\]")
def batch_column_missing_for_a_classifier(m, tmp):
    a = counts_adata()
    a.obs = a.obs.drop(columns="batch")
    return [a], lambda: SSLClassifier.from_encoder(m.enc_batch, a, labels_key="ct")


def _new_batch():
    a = counts_adata()
    a.obs["batch"] = "zz"
    return a


@bad_input(ValueError, r"batches the model was not trained on: \[.*zz", r"give the cells one")
def unseen_batch_for_a_query_model(m, tmp):
    a = _new_batch()
    return [a], lambda: SSLEncoder.load_query_data(a, m.enc_batch)


@bad_input(ValueError, r"batches the model was not trained on: \[.*zz", r"give the cells one")
def unseen_batch_loading_a_batch_model(m, tmp):
    a = _new_batch()
    return [a], lambda: SSLEncoder.load(m.dirs["enc_batch"], adata=a)


@bad_input(
    ValueError,
    r"batches the model was not trained on: \[.*zz",
    r"[Gg]ive (these|the) cells one of",
)
def unseen_batch_to_reconstruct(m, tmp):
    a = _new_batch()
    return [a], lambda: m.enc_batch.get_reconstructed_expression(a)


@bad_input(ValueError, r"batches the model was not trained on: \[.*zz", r"transform_batch=")
def unseen_batch_to_predict_proteins(m, tmp):
    mdata = citeseq()
    mdata.obs["batch"] = "zz"
    return [mdata], lambda: m.prot_batch.predict_protein(mdata)


@bad_input(KeyError, r"batch_key='batch', which is not a column", r"Add each cell's batch")
def batch_column_missing_to_reconstruct(m, tmp):
    a = counts_adata()
    del a.obs["batch"]
    return [a], lambda: m.enc_batch.get_reconstructed_expression(a)


@bad_input(KeyError, r"batch_key='batch', which is not a column", r"Add each cell's batch there")
def batch_column_missing_loading_a_batch_model(m, tmp):
    a = counts_adata()
    del a.obs["batch"]
    return [a], lambda: SSLEncoder.load(m.dirs["enc_batch"], adata=a)


# ------------------------------------------------------------------------ modalities
@bad_input(KeyError, r"protein modality 'adt' is not in the MuData", r"protein=")
def protein_modality_missing(m, tmp):
    mdata = citeseq()
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata, protein="adt")


@bad_input(KeyError, r"rna modality 'gex' is not in the MuData", r"modalities=")
def rna_modality_missing(m, tmp):
    mdata = citeseq()
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata, rna="gex")


@bad_input(KeyError, r"protein modality 'adt' is not in the MuData", r"modalities=")
def protein_modality_missing_set_up(m, tmp):
    mdata = citeseq()
    modalities = {"rna_layer": "rna", "protein_layer": "adt"}
    return [mdata], lambda: SSLProteinPredictor.setup_mudata(mdata, modalities=modalities)


@bad_input(ValueError, r"must differ; both are 'rna'", r"Name the modality with the protein")
def same_modality_for_rna_and_protein(m, tmp):
    mdata = citeseq()
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata, protein="rna")


@bad_input(ValueError, r"mdata\.mod\['prot'\]\.X holds non-integer", r"raw antibody \(ADT\)")
def log_normalised_proteins(m, tmp):
    mdata = citeseq()
    mdata.mod["prot"].X = np.log1p(mdata.mod["prot"].X)
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(ValueError, r"mdata\.mod\['prot'\]\.X contains \d+ negative", r"CLR")
def clr_proteins(m, tmp):
    mdata = citeseq()
    x = np.log1p(mdata.mod["prot"].X)
    mdata.mod["prot"].X = x - x.mean(axis=1, keepdims=True)
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(ValueError, r"mdata\.mod\['prot'\]\.X has dtype <U", r"astype")
def protein_strings(m, tmp):
    mdata = citeseq()
    mdata.mod["prot"].X = mdata.mod["prot"].X.astype(str)
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(ValueError, r"duplicated protein names \(P0\)", r"var_names_make_unique")
def duplicated_protein_names(m, tmp):
    mdata = citeseq()
    mdata.mod["prot"].var_names = ["P0", "P0", "P1", "P2", "P3"]
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(ValueError, r"\(60 cells\) and the protein modality 'prot' \(40 cells\)", r"intersect")
def different_cells(m, tmp):
    rna = counts_adata()
    rng = np.random.default_rng(1)
    prot = ad.AnnData(
        rng.poisson(5, size=(40, 5)).astype(np.float32),
        obs=pd.DataFrame(index=rna.obs_names[20:]),
        var=pd.DataFrame(index=[f"P{i}" for i in range(5)]),
    )
    mdata = md.MuData({"rna": rna, "prot": prot})
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(ValueError, r"must hold the same cells in the same order", r"intersect_obs")
def cells_in_another_order(m, tmp):
    rna = counts_adata()
    prot = ad.AnnData(
        np.ones((60, 5), dtype=np.float32),
        obs=pd.DataFrame(index=rna.obs_names[::-1]),
        var=pd.DataFrame(index=[f"P{i}" for i in range(5)]),
    )
    mdata = md.MuData({"rna": rna, "prot": prot})
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(TypeError, r"needs a MuData, got AnnData", r"mudata\.MuData\(")
def anndata_instead_of_mudata(m, tmp):
    a = counts_adata()
    return [a], lambda: SSLProteinPredictor.from_encoder(m.enc, a)


@bad_input(ValueError, r"mdata\.mod\['rna'\]\.X holds non-integer", r"rna_layer='counts'")
def non_count_rna_in_a_mudata(m, tmp):
    mdata = citeseq()
    mdata.mod["rna"].X = mdata.mod["rna"].X * 0.5
    return [mdata], lambda: SSLProteinPredictor.from_encoder(m.enc, mdata)


@bad_input(KeyError, r"no RNA modality 'rna'", r"pass the RNA AnnData itself")
def predict_proteins_without_rna(m, tmp):
    mdata = citeseq()
    only_proteins = md.MuData({"prot": mdata.mod["prot"]})
    return [only_proteins], lambda: m.prot.predict_protein(only_proteins)


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_clear_message_and_input_unchanged(bad, models, tmp_path):
    inputs, call = bad.build(models, tmp_path)
    snapshots = [Snapshot(data) for data in inputs]
    if bad.warns:
        with pytest.warns(bad.error) as record:
            call()
        texts = [str(w.message) for w in record if issubclass(w.category, bad.error)]
        message = next((t for t in texts if re.search(bad.problem, t)), "\n".join(texts))
    else:
        with pytest.raises(bad.error) as info:
            call()
        message = message_of(info.value)
    assert re.search(bad.problem, message, re.S), message
    assert re.search(bad.fix, message, re.S), message
    for snapshot in snapshots:
        snapshot.assert_unchanged()


def test_at_least_forty_bad_inputs():
    assert len(BAD_INPUTS) >= 40


def test_unknown_batches_are_named_plainly(models):
    with pytest.raises(ValueError) as info:
        SSLEncoder.load_query_data(_new_batch(), models.enc_batch)
    assert "['zz']" in str(info.value)


def test_protein_batches_are_read_where_the_model_was_set_up(models):
    """A model whose batch_key lives in the RNA modality reads it there, not in mdata.obs."""
    mdata = citeseq(seed=6)
    model = SSLProteinPredictor.from_encoder(
        models.enc, mdata, n_hidden_head=(8,), batch_key="batch", modalities={"batch_key": "rna"}
    )
    query = citeseq(seed=7)
    query.obs["batch"] = "not a batch"  # a global column of the same name, not the model's
    assert model.predict_protein(query, return_numpy=True).shape == (60, 5)


def test_setup_warnings_change_nothing_but_the_registration():
    """Set-up warns about duplicated genes and empty cells; the data gain only scvi's keys."""
    adata = edit_matrix(_duplicated_genes(), [0], slice(None), 0)
    snapshot = Snapshot(adata)
    with pytest.warns(UserWarning) as record:
        SSLEncoder.setup_anndata(adata)
    texts = " ".join(str(w.message) for w in record)
    assert "1 duplicated gene names (e.g. G0)" in texts and "var_names_make_unique" in texts
    assert "1 of 60 cells in adata.X have no counts" in texts and "filter_cells" in texts
    registration = {c for c in adata.obs.columns if c.startswith("_scvi")}
    assert registration == {"_scvi_batch"}  # what scvi-tools' setup_anndata documents
    adata.obs = adata.obs.drop(columns=list(registration))
    for key in [k for k in adata.uns if k.startswith("_scvi")]:
        del adata.uns[key]
    snapshot.assert_unchanged()


# ================================================================ shapes that must work
def test_a_single_cell_trains_and_embeds():
    adata = counts_adata(1)
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata, **SMALL)
    with pytest.warns(UserWarning, match="early stopping is disabled") as caught:
        model.train(max_epochs=1, **QUIET)
    assert next(w for w in caught if "early stopping" in str(w.message)).filename == __file__
    latent = model.get_latent_representation()
    assert latent.shape == (1, 4) and np.isfinite(latent).all()
    one = counts_adata(5, seed=9)[2:3].copy()
    assert model.get_latent_representation(one).shape == (1, 4)


def test_a_csc_matrix_trains_and_embeds():
    adata = counts_adata(80)
    adata.X = adata.X.tocsc()
    before = adata.X.copy()
    SSLEncoder.setup_anndata(adata)
    model = _train(SSLEncoder(adata, **SMALL))
    latent = model.get_latent_representation()
    assert sp.isspmatrix_csc(adata.X) and _same_matrix(adata.X, before)
    as_csr = adata.copy()
    as_csr.X = as_csr.X.tocsr()
    assert np.array_equal(model.get_latent_representation(as_csr), latent)
    assert np.isfinite(latent).all()


# ====================================================================== tampered files
def _copy_dir(source: pathlib.Path, tmp: pathlib.Path, name: str) -> pathlib.Path:
    target = tmp / name
    shutil.copytree(source, target)
    return target


def _rewrite_model_file(directory: pathlib.Path, edit) -> pathlib.Path:
    path = directory / "model.pt"
    content = load_torch_weights(path)
    edit(content)
    torch.save(content, path)
    return path


def _rewrite_safetensors(directory: pathlib.Path, edit) -> pathlib.Path:
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    state = edit(load_file(str(path)))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _rewrite_card(directory: pathlib.Path, edit) -> pathlib.Path:
    path = directory / "model_card.json"
    card = json.loads(path.read_text())
    path.write_text(edit(card) if callable(edit) else edit)
    return path


def _first_encoder_weight(state: dict) -> str:
    return next(k for k in state if k.startswith("encoder.") and k.endswith("weight"))


@dataclass
class Tampered:
    build: object  # (models, tmp) -> (file named in the message, call, inputs to snapshot)
    error: type
    problem: str
    fix: str


TAMPERED = []


def tampered(error, problem, fix):
    def register(build):
        TAMPERED.append(pytest.param(Tampered(build, error, problem, fix), id=build.__name__))
        return build

    return register


@tampered(ValueError, r"not a readable PyTorch checkpoint: .*truncated", r"save it again")
def truncated_model_file(m, tmp):
    d = _copy_dir(m.dirs["enc"], tmp, "truncated")
    path = d / "model.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, lambda: SSLEncoder.load(d), []


@tampered(ValueError, r"not a readable PyTorch checkpoint", r"download or copy complete")
def empty_model_file(m, tmp):
    d = _copy_dir(m.dirs["clf"], tmp, "empty")
    (d / "model.pt").write_bytes(b"")
    return d / "model.pt", lambda: SSLClassifier.load(d), []


@tampered(ValueError, r"not a readable PyTorch checkpoint: .*another format", r"again")
def model_file_of_random_bytes(m, tmp):
    d = _copy_dir(m.dirs["prot"], tmp, "garbage")
    (d / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return d / "model.pt", lambda: SSLProteinPredictor.load(d), []


@tampered(ValueError, r"holds a saved SSLEncoder, not a SSLClassifier", r"SSLEncoder\.load\(")
def encoder_directory_loaded_as_a_classifier(m, tmp):
    return m.dirs["enc"], lambda: SSLClassifier.load(m.dirs["enc"]), []


@tampered(ValueError, r"holds a saved SSLClassifier, not a SSLEncoder", r"SSLClassifier\.load\(")
def classifier_directory_loaded_as_an_encoder(m, tmp):
    return m.dirs["clf"], lambda: SSLEncoder.load(m.dirs["clf"]), []


@tampered(ValueError, r"saved SSLEncoder, not a SSLProteinPredictor", r"SSLEncoder\.load\(")
def encoder_directory_loaded_as_a_protein_model(m, tmp):
    return m.dirs["enc"], lambda: SSLProteinPredictor.load(m.dirs["enc"]), []


@tampered(UnsafeCheckpointError, r"holds a SCVI saved through scvi-tools", r"scvi\.model\.SCVI")
def scvi_tools_directory(m, tmp):
    adata = counts_adata()
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata, n_hidden=8, n_latent=2)
    model.save(tmp / "scvi")
    return tmp / "scvi" / "model.pt", lambda: SSLEncoder.load(tmp / "scvi"), []


@tampered(ValueError, r"encoder\.0\.weight has shape \(3, 3\)", r"settings and gene list")
def model_file_with_a_wrong_shape(m, tmp):
    d = _copy_dir(m.dirs["enc"], tmp, "shape")

    def edit(content):
        content["model_state_dict"]["encoder.0.weight"] = torch.zeros(3, 3)

    return _rewrite_model_file(d, edit), lambda: SSLEncoder.load(d), []


@tampered(ValueError, r"is stored as torch\.int32, but the model holds torch\.float32", r"again")
def model_file_rewritten_as_int32(m, tmp):
    d = _copy_dir(m.dirs["clf"], tmp, "int32")

    def edit(content):
        state = content["model_state_dict"]
        for name, value in state.items():
            if value.is_floating_point():
                state[name] = value.to(torch.int32)

    return _rewrite_model_file(d, edit), lambda: SSLClassifier.load(d), []


@tampered(ValueError, r"stored as torch\.float16", r"original")
def model_file_rewritten_as_float16(m, tmp):
    d = _copy_dir(m.dirs["prot"], tmp, "float16")

    def edit(content):
        state = content["model_state_dict"]
        for name, value in state.items():
            if value.is_floating_point():
                state[name] = value.half()

    return _rewrite_model_file(d, edit), lambda: SSLProteinPredictor.load(d), []


@tampered(ValueError, r"does not fit this SSLModule: missing \['encoder\.0\.weight'\]", r"save")
def model_file_missing_a_weight(m, tmp):
    d = _copy_dir(m.dirs["enc"], tmp, "missing")

    def edit(content):
        del content["model_state_dict"]["encoder.0.weight"]

    return _rewrite_model_file(d, edit), lambda: SSLEncoder.load(d), []


@tampered(ValueError, r"holds no scvi-tools registry or gene vocabulary", r"model\.save")
def model_file_without_a_registry(m, tmp):
    d = _copy_dir(m.dirs["enc"], tmp, "registry")

    def edit(content):
        del content["attr_dict"]["registry_"]

    return _rewrite_model_file(d, edit), lambda: SSLEncoder.load(d), []


@tampered(ValueError, r"is not an scssl model file: it lacks \['model_state_dict'", r"model\.save")
def plain_state_dict_as_model_file(m, tmp):
    d = _copy_dir(m.dirs["enc"], tmp, "plain")
    torch.save(m.enc.module.state_dict(), d / "model.pt")
    return d / "model.pt", lambda: SSLEncoder.load(d), []


@tampered(FileNotFoundError, r"holds no saved model", r"model\.save\(dir_path\)")
def directory_without_a_model(m, tmp):
    return tmp / "nothing", lambda: SSLEncoder.load(tmp / "nothing"), []


@tampered(FileNotFoundError, r"holds no saved model", r"import_safetensors")
def export_directory_loaded_as_a_saved_model(m, tmp):
    return m.exported, lambda: SSLEncoder.load(m.exported), []


@tampered(FileNotFoundError, r"model_card\.json does not exist", r"SSLEncoder|<ModelClass>\.load")
def saved_directory_imported_as_an_export(m, tmp):
    return m.dirs["enc"], lambda: scssl.io.import_safetensors(m.dirs["enc"]), []


@tampered(ValueError, r"stored as torch\.int32, but the model holds torch\.float32", r"again")
def safetensors_rewritten_as_int32(m, tmp):
    d = _copy_dir(m.exported, tmp, "st_int32")
    path = _rewrite_safetensors(
        d, lambda w: {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in w.items()}
    )
    return path, lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"has shape \(2, 2\), but the model .* has \(50, 16\)", r"gene list")
def safetensors_with_a_wrong_shape(m, tmp):
    d = _copy_dir(m.exported, tmp, "st_shape")

    def edit(w):
        w[_first_encoder_weight(w)] = torch.zeros(2, 2)
        return w

    return _rewrite_safetensors(d, edit), lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"stored as torch\.float64", r"again")
def safetensors_rewritten_as_float64(m, tmp):
    d = _copy_dir(m.exported, tmp, "st_float64")
    path = _rewrite_safetensors(
        d, lambda w: {k: v.double() if v.is_floating_point() else v for k, v in w.items()}
    )
    return path, lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"not a readable safetensors file: .*truncated", r"[Ee]xport the model again")
def truncated_safetensors(m, tmp):
    d = _copy_dir(m.exported, tmp, "st_truncated")
    path = d / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return path, lambda: scssl.io.import_safetensors(d), []


@tampered(FileNotFoundError, r"model_card\.json does not exist", r"export_safetensors")
def missing_model_card(m, tmp):
    d = _copy_dir(m.exported, tmp, "no_card")
    (d / "model_card.json").unlink()
    return d / "model_card.json", lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"not an scssl model card \(format=None", r"export_safetensors")
def foreign_model_card(m, tmp):
    d = _copy_dir(m.exported, tmp, "foreign_card")
    card = json.dumps({"architectures": ["BertModel"], "model_type": "bert"})
    return _rewrite_card(d, card), lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"is not valid JSON", r"[Ee]xport the model again")
def model_card_not_json(m, tmp):
    d = _copy_dir(m.exported, tmp, "card_json")
    return _rewrite_card(d, '{"format": "scssl-safe'), lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"lacks \['gene_vocabulary'\]", r"[Ee]xport the model again")
def model_card_without_genes(m, tmp):
    d = _copy_dir(m.exported, tmp, "card_genes")

    def edit(card):
        del card["gene_vocabulary"]
        return json.dumps(card)

    return _rewrite_card(d, edit), lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"describes a SSLClassifier, but .* weights of a SSLEncoder", r"again")
def model_card_of_another_class(m, tmp):
    d = _copy_dir(m.exported, tmp, "card_class")

    def edit(card):
        card["model_class"] = "SSLClassifier"
        return json.dumps(card)

    return _rewrite_card(d, edit), lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"names the model class 'SCVI'", r"it has \['SSLEncoder'")
def model_card_of_an_unknown_class(m, tmp):
    d = _copy_dir(m.exported, tmp, "card_scvi")

    def edit(card):
        card["model_class"] = "SCVI"
        return json.dumps(card)

    return _rewrite_card(d, edit), lambda: scssl.io.import_safetensors(d), []


@tampered(
    ValueError,
    r"has shape \(.*50.*\), but the model built from its settings and 40 genes",
    r"gene list",
)
def model_card_with_fewer_genes(m, tmp):
    d = _copy_dir(m.exported, tmp, "card_vocabulary")

    def edit(card):
        card["gene_vocabulary"]["symbols"] = card["gene_vocabulary"]["symbols"][:40]
        return json.dumps(card)

    _rewrite_card(d, edit)
    return d / "model.safetensors", lambda: scssl.io.import_safetensors(d), []


@tampered(
    FileNotFoundError, r"model\.safetensors does not exist; the export is incomplete", r"again"
)
def export_without_weights(m, tmp):
    d = _copy_dir(m.exported, tmp, "no_weights")
    (d / "model.safetensors").unlink()
    return d / "model.safetensors", lambda: scssl.io.import_safetensors(d), []


@tampered(ValueError, r"is not a training checkpoint \(no optimiser state\)", r"last\.ckpt")
def model_file_as_a_training_checkpoint(m, tmp):
    adata = counts_adata()
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata, **SMALL)
    path = m.dirs["enc"] / "model.pt"
    return path, lambda: model.train(max_epochs=1, ckpt_path=str(path), **QUIET), []


@tampered(ValueError, r"not a readable PyTorch checkpoint", r"complete")
def truncated_training_checkpoint(m, tmp):
    adata = counts_adata()
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata, **SMALL)
    path = tmp / "last.ckpt"
    path.write_bytes((m.dirs["enc"] / "model.pt").read_bytes()[:1000])
    return path, lambda: model.train(max_epochs=1, ckpt_path=str(path), **QUIET), []


@tampered(FileNotFoundError, r"does not exist", r"check the path")
def missing_training_checkpoint(m, tmp):
    adata = counts_adata()
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata, **SMALL)
    path = tmp / "last.ckpt"
    return path, lambda: model.train(max_epochs=1, ckpt_path=str(path), **QUIET), []


@tampered(ValueError, r"not a readable PyTorch checkpoint", r"complete")
def truncated_published_checkpoint(m, tmp):
    path = study_checkpoint(tmp)
    path.write_bytes(path.read_bytes()[:-200])
    a = counts_adata()
    return path, lambda: SSLEncoder.from_ssl_in_scg(path, study_genes(tmp), adata=a), [a]


@pytest.mark.parametrize("bad", TAMPERED)
def test_tampered_file_is_refused_naming_the_file(bad, models, tmp_path):
    path, call, inputs = bad.build(models, tmp_path)
    snapshots = [Snapshot(data) for data in inputs]
    with pytest.raises(bad.error) as info:
        call()
    message = message_of(info.value)
    assert str(path) in message, message
    assert re.search(bad.problem, message, re.S), message
    assert re.search(bad.fix, message, re.S), message
    for snapshot in snapshots:
        snapshot.assert_unchanged()


# ============================================================================ payloads
class SystemPayload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class TouchPayload:
    """Unpickling this calls ``pathlib.Path.touch`` on the marker."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


PAYLOADS = {"os.system": SystemPayload, "pathlib.Path.touch": TouchPayload}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_the_payloads_are_live(kind, tmp_path):
    """Control: an unrestricted load of the files below runs the payload."""
    marker = tmp_path / "ran"
    torch.save({"x": PAYLOADS[kind](marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def _poison_model_dir(directory: pathlib.Path, payload) -> None:
    """The genuine model.pt of ``directory`` with the payload among its attributes."""

    def edit(content):
        content["attr_dict"]["history_"] = payload

    _rewrite_model_file(directory, edit)


def study_mlp(n_in, channels, activation=nn.SELU):
    layers = []
    for n_out in channels[:-1]:
        layers += [nn.Linear(n_in, n_out), activation(), nn.Dropout(0.1)]
        n_in = n_out
    layers.append(nn.Linear(n_in, channels[-1]))
    return nn.Sequential(*layers)


def study_genes(tmp: pathlib.Path) -> pathlib.Path:
    path = tmp / "var.parquet"
    pd.DataFrame(
        {
            "feature_id": [f"ENSG{i + 1:011d}" for i in range(N_GENES)],
            "feature_name": [f"G{i}" for i in range(N_GENES)],
        }
    ).to_parquet(path)
    return path


def study_checkpoint(tmp: pathlib.Path, kind: str = "masked_autoencoder", payload=None):
    """A Lightning checkpoint in the layout of the study's releases (50 genes)."""
    torch.manual_seed(0)
    if kind == "classifier":
        classifier = study_mlp(N_GENES, [24, 24, 16, 16, 8, 3], activation=nn.ReLU)
        state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
    else:
        encoder = study_mlp(N_GENES, [24, 24, 16, 16, 8])
        decoder = nn.Sequential(study_mlp(8, [16, 16, 24, 24, N_GENES]), nn.Sigmoid())
        state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    content = {"epoch": 3, "global_step": 120, "state_dict": state}
    if payload is not None:
        content["hyper_parameters"] = {"activation": payload}
    path = tmp / f"{kind}.ckpt"
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    """A real ``last.ckpt`` written by ``train(checkpoint_dir=...)``."""
    directory = tmp_path_factory.mktemp("checkpoint")
    adata = counts_adata()
    SSLEncoder.setup_anndata(adata)
    _train(SSLEncoder(adata, **SMALL), checkpoint_dir=directory)
    return directory / "last.ckpt"


def _load_encoder(m, tmp, payload):
    d = _copy_dir(m.dirs["enc"], tmp, "enc")
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: SSLEncoder.load(d)


def _load_classifier(m, tmp, payload):
    d = _copy_dir(m.dirs["clf"], tmp, "clf")
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: SSLClassifier.load(d)


def _load_protein_predictor(m, tmp, payload):
    d = _copy_dir(m.dirs["prot"], tmp, "prot")
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: SSLProteinPredictor.load(d)


def _encoder_query(m, tmp, payload):
    d = _copy_dir(m.dirs["enc"], tmp, "enc")
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: SSLEncoder.load_query_data(counts_adata(), d)


def _prepared_query(m, tmp, payload):
    d = _copy_dir(m.dirs["enc"], tmp, "enc")
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: SSLEncoder.prepare_query_anndata(counts_adata(), d)


def _scvi_hub(m, tmp, payload):
    from scvi.hub import HubModel

    d = tmp / "hub"
    scssl.io.save_scvi_hub(m.enc, d)
    _poison_model_dir(d, payload)
    return d / "model.pt", lambda: HubModel(str(d)).model


def _cli_embed(m, tmp, payload):
    d = _copy_dir(m.dirs["enc"], tmp, "enc")
    _poison_model_dir(d, payload)
    data = tmp / "cells.h5ad"
    counts_adata().write_h5ad(data)
    argv = ["embed", "--model", str(d), "--input", str(data), "--output", str(tmp / "out.h5ad")]

    def call():
        if main(argv) == 2:  # the CLI reports errors as one line and exit status 2
            raise UnsafeCheckpointError("scssl embed exited with status 2")

    return d / "model.pt", call


def _resume_training(m, tmp, payload, checkpoint=None):
    content = load_torch_weights(checkpoint)
    content["callbacks"]["evil"] = payload
    path = tmp / "last.ckpt"
    torch.save(content, path)
    adata = counts_adata()
    SSLEncoder.setup_anndata(adata)
    model = SSLEncoder(adata, **SMALL)
    return path, lambda: model.train(max_epochs=2, ckpt_path=str(path), **QUIET)


def _published_encoder(m, tmp, payload):
    path = study_checkpoint(tmp, payload=payload)
    return path, lambda: SSLEncoder.from_ssl_in_scg(path, study_genes(tmp))


def _published_classifier(m, tmp, payload):
    path = study_checkpoint(tmp, "classifier", payload=payload)
    return path, lambda: SSLClassifier.from_ssl_in_scg(path, study_genes(tmp), counts_adata())


def _published_plain_pickle(m, tmp, payload):
    import pickle

    path = study_checkpoint(tmp)
    content = torch.load(path, weights_only=True)
    content["hyper_parameters"] = {"activation": payload}
    path.write_bytes(pickle.dumps(content))
    return path, lambda: SSLEncoder.from_ssl_in_scg(path, study_genes(tmp))


def _published_legacy_format(m, tmp, payload):
    path = study_checkpoint(tmp)
    content = torch.load(path, weights_only=True)
    content["hyper_parameters"] = {"activation": payload}
    torch.save(content, path, _use_new_zipfile_serialization=False)
    return path, lambda: SSLEncoder.from_ssl_in_scg(path, study_genes(tmp))


def _pickle_as_safetensors(m, tmp, payload):
    d = _copy_dir(m.exported, tmp, "export")
    torch.save({"weights": payload}, d / "model.safetensors")
    return d / "model.safetensors", lambda: scssl.io.import_safetensors(d)


LOADERS = {
    "SSLEncoder.load": _load_encoder,
    "SSLClassifier.load": _load_classifier,
    "SSLProteinPredictor.load": _load_protein_predictor,
    "SSLEncoder.load_query_data": _encoder_query,
    "SSLEncoder.prepare_query_anndata": _prepared_query,
    "scvi.hub.HubModel.model": _scvi_hub,
    "scssl embed --model": _cli_embed,
    "train(ckpt_path=...)": _resume_training,
    "SSLEncoder.from_ssl_in_scg": _published_encoder,
    "SSLClassifier.from_ssl_in_scg": _published_classifier,
    "from_ssl_in_scg (plain pickle)": _published_plain_pickle,
    "from_ssl_in_scg (legacy torch.save)": _published_legacy_format,
    "import_safetensors (pickle renamed)": _pickle_as_safetensors,
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_pickle_payload_is_refused_and_never_runs(
    loader, kind, models, training_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    marker = tmp_path / "payload_ran"
    build = LOADERS[loader]
    extra = {"checkpoint": training_checkpoint} if build is _resume_training else {}
    path, call = build(models, tmp_path, PAYLOADS[kind](marker), **extra)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as info:
        call()
    assert not marker.exists(), f"{loader} ran the payload"
    if loader == "scssl embed --model":
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        message = err
    else:
        message = str(info.value)
    assert f"Refused to load {path}" in message
    if loader != "import_safetensors (pickle renamed)":
        assert re.search(r"posix\.system|pathlib", message), message


# ========================================================================= round trips
def _outputs(kind: str, model, data) -> dict:
    if kind == "encoder":
        return {
            "embedding": model.get_latent_representation(data),
            "reconstruction": model.get_reconstructed_expression(data, return_numpy=True),
        }
    if kind == "classifier":
        return {
            "embedding": model.get_latent_representation(data),
            "labels": np.asarray(model.predict(data)),
            "probabilities": model.predict(data, soft=True).to_numpy(),
            "uncalibrated": model.predict(data, soft=True, calibrated=False).to_numpy(),
        }
    return {
        "embedding": model.get_latent_representation(data),
        "proteins": model.predict_protein(data, return_numpy=True),
        "protein_counts": model.predict_protein(data, counts=True, return_numpy=True),
    }


ROUND_TRIP_MODELS = {
    "encoder": (SSLEncoder, "enc", lambda: counts_adata(90, seed=11)),
    "classifier": (SSLClassifier, "clf", lambda: counts_adata(90, seed=12)),
    "protein": (SSLProteinPredictor, "prot", lambda: citeseq(90, seed=13)),
}


@pytest.mark.parametrize("file_format", ["save/load", "safetensors"])
@pytest.mark.parametrize("kind", list(ROUND_TRIP_MODELS))
def test_round_trip_is_bit_exact(kind, file_format, models, tmp_path):
    cls, name, query = ROUND_TRIP_MODELS[kind]
    model = getattr(models, name)
    data = query()
    expected = _outputs(kind, model, data)
    if kind == "classifier":
        assert model.calibration_ and model.module.temperature.item() != 1.0
    if file_format == "save/load":
        model.save(tmp_path / "saved")
        rebuilt = [cls.load(tmp_path / "saved"), cls.load(tmp_path / "saved", data)]
    else:
        scssl.io.export_safetensors(model, tmp_path / "exported")
        rebuilt = [
            scssl.io.import_safetensors(tmp_path / "exported"),
            scssl.io.import_safetensors(tmp_path / "exported", data),
        ]
    own = model.module.state_dict()
    for other in rebuilt:
        assert type(other) is cls
        state = other.module.state_dict()
        assert list(state) == list(own)
        for key, value in own.items():
            assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
        got = _outputs(kind, other, data)
        for output, values in expected.items():
            assert np.array_equal(got[output], values), output
        assert other.gene_vocabulary_ == model.gene_vocabulary_
        for attribute in ("class_names_", "protein_names_", "calibration_"):
            assert getattr(other, attribute, None) == getattr(model, attribute, None), attribute


# ======================================================================= interruption
class InterruptAfter(Callback):
    """Raise ``KeyboardInterrupt`` (what Ctrl+C raises) after ``steps`` optimiser steps."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.steps:
            raise KeyboardInterrupt


class RecordStart(Callback):
    """What a run starts from: epoch, step and the optimiser's state."""

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.epoch, self.step = trainer.current_epoch, trainer.global_step
        self.adam_state = sum(len(state) for state in optimizer.state.values())


def _interruptible_model(kind: str):
    if kind == "encoder":
        adata = counts_adata(200)
        SSLEncoder.setup_anndata(adata)
        return SSLEncoder(adata, **SMALL), {"train_size": 0.9}
    encoder_data = counts_adata(60)
    SSLEncoder.setup_anndata(encoder_data)
    encoder = _train(SSLEncoder(encoder_data, **SMALL))
    model = SSLClassifier.from_encoder(encoder, counts_adata(200, seed=5), labels_key="ct")
    return model, {"train_size": 0.9, "validation_size": 0.1, "calibrate": False}


@pytest.mark.parametrize("kind", ["encoder", "classifier"])
def test_interrupted_training_raises_keyboard_interrupt_and_resumes(kind, tmp_path, monkeypatch):
    scvi.settings.seed = 0
    model, split = _interruptible_model(kind)
    options = {"batch_size": 32, "early_stopping": False, **split, **QUIET}
    steps_per_epoch = int(np.ceil(180 / 32))  # 200 cells, 90% for training
    if kind == "classifier":
        steps_per_epoch = max(steps_per_epoch, 10)  # an epoch of the classifier: >= 10 steps
        options["finetuned_share"] = 0.7  # resuming must keep the interpolation's start
    with pytest.raises(KeyboardInterrupt, match="keeps the weights of its last step") as info:
        model.train(
            max_epochs=4,
            checkpoint_dir=tmp_path,
            callbacks=[InterruptAfter(steps_per_epoch + 2)],  # in the second epoch
            **options,
        )
    assert type(info.value) is KeyboardInterrupt  # not Lightning's SystemExit
    # still usable: eval mode, trained weights, finite embeddings
    assert not model.module.training
    assert model.is_trained_
    interrupted = model.get_latent_representation()
    assert np.isfinite(interrupted).all()
    assert (tmp_path / "last.ckpt").is_file()
    checkpoint = load_torch_weights(tmp_path / "last.ckpt")
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == steps_per_epoch

    if kind == "classifier":  # the resumed run interpolates with the first run's start
        kept = {name: w.clone() for name, w in model._start_weights.items()}
        interpolated = []
        monkeypatch.setattr(
            "scssl.model._ssl_classifier.interpolate_weights",
            lambda module, start, share: interpolated.append(start),
        )
    start = RecordStart()
    model.train(max_epochs=4, ckpt_path=str(tmp_path / "last.ckpt"), callbacks=[start], **options)
    if kind == "classifier":
        assert len(interpolated) == 1 and model._start_weights is None
        for name, weight in kept.items():
            torch.testing.assert_close(interpolated[0][name], weight)
    assert start.epoch == 1  # the interrupted epoch
    assert start.step == steps_per_epoch
    assert start.adam_state > 0  # Adam's moments restored, not a fresh optimiser
    assert not np.array_equal(model.get_latent_representation(), interrupted)
