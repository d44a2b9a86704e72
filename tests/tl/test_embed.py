import numpy as np
import pytest
import scanpy as sc

import scssl


def test_embed_writes_obsm_and_uns_and_feeds_neighbors_umap(trained_model):
    adata = trained_model.adata.copy()
    x_before = adata.X.copy()
    assert scssl.tl.embed(adata, trained_model) is None
    assert adata.obsm["X_scssl"].shape == (adata.n_obs, 16)
    params = adata.uns["scssl"]["params"]
    assert params["key_added"] == "X_scssl" and params["pretext"] == "random_mask"
    assert adata.uns["scssl"]["alignment"]["share"] == 1.0
    assert (adata.X != x_before).nnz == 0
    sc.pp.neighbors(adata, use_rep="X_scssl")
    sc.tl.umap(adata)
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)


def test_embed_copy_and_key_added_on_a_query_with_other_genes(trained_model):
    query = trained_model.adata[:40, ::2].copy()
    before = set(query.obsm)
    out = scssl.tl.embed(query, trained_model, key_added="X_ssl", copy=True, min_overlap=0.3)
    assert set(query.obsm) == before  # the input is untouched with copy=True
    assert out.obsm["X_ssl"].shape == (40, 16)
    alignment = out.uns["ssl"]["alignment"]  # key_added="X_ssl" -> uns["ssl"]
    assert alignment["n_matched"] == int(np.ceil(trained_model.adata.n_vars / 2))
    assert list(out.var_names) == list(query.var_names)  # genes of the user's data kept


def test_two_embeddings_keep_their_own_params(trained_model):
    adata = trained_model.adata[:50].copy()
    scssl.tl.embed(adata, trained_model)
    scssl.tl.embed(adata, trained_model, key_added="X_other", min_overlap=0.3)
    assert adata.uns["scssl"]["params"]["key_added"] == "X_scssl"
    assert adata.uns["other"]["params"]["key_added"] == "X_other"
    assert adata.uns["other"]["params"]["min_overlap"] == 0.3
    assert adata.uns["other"]["alignment"]["share"] == 1.0
    scssl.tl.embed(adata, trained_model, key_added="latent")  # no "X_" prefix: the key itself
    assert adata.uns["latent"]["params"]["key_added"] == "latent"


def test_options_are_keyword_only(trained_model):
    adata = trained_model.adata[:10].copy()
    with pytest.raises(TypeError, match="positional"):
        scssl.tl.embed(adata, trained_model, "X_scssl")
