"""scssl.data.highly_variable_genes: scanpy's ranking, robust on small batches."""

import warnings

import numpy as np
import pandas as pd
import pytest

from scssl.data import highly_variable_genes


def test_small_batches_with_a_singular_loess_fit_still_get_genes(kang_demo):
    # 500 + 400 cells of two conditions: scanpy's seurat_v3 loess (span 0.3) is singular here
    cells = kang_demo[np.r_[0:500, 2500:2900]].copy()
    before = cells.X.copy()
    keep = highly_variable_genes(cells, 500, batch_key="stim")
    assert keep.dtype == bool and keep.sum() == 500
    assert (cells.X != before).nnz == 0


def test_near_singular_loess_on_three_chemistries_is_refitted(shared_file):
    # pbmc_3tech, 500 of 1,767 genes: skmisc's loess fails with "There are other near
    # singularities as well" at span 0.3, a message unlike the Kang one above
    import anndata as ad
    import scanpy as sc

    cells = ad.read_h5ad(shared_file("pbmc_3tech.h5ad"))
    with pytest.raises(ValueError, match="singularit"):
        sc.pp.highly_variable_genes(
            cells, flavor="seurat_v3", n_top_genes=500, batch_key="batch", inplace=False
        )
    keep = highly_variable_genes(cells, 500, batch_key="batch")
    assert keep.dtype == bool and keep.sum() == 500


def test_all_genes_kept_when_asking_for_more(kang_demo):
    cells = kang_demo[:200].copy()
    assert highly_variable_genes(cells, cells.n_vars + 1).all()


def test_a_batch_of_one_cell_is_left_out_of_the_ranking(kang_demo):
    # scikit-misc's loess crashes the interpreter on a batch of one cell (found with a
    # one-cell query in transfer_labels)
    cells = kang_demo[:300].copy()
    cells.obs["batch"] = ["a"] * 299 + ["b"]
    with pytest.warns(UserWarning, match=r"1 batches \('b'\) have fewer"):
        keep = highly_variable_genes(cells, 500, batch_key="batch")
    assert keep.sum() == 500
    ranked_without = highly_variable_genes(cells[:299].copy(), 500, batch_key="batch")
    np.testing.assert_array_equal(keep, ranked_without)
    cells.obs["batch"] = pd.Categorical(["a"] * 300, categories=["a", "unused"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unused category is no batch of one cell
        highly_variable_genes(cells, 500, batch_key="batch")
    cells.obs["batch"] = [str(i) for i in range(300)]  # no batch large enough: no batches
    with pytest.warns(UserWarning, match="300 batches"):
        keep = highly_variable_genes(cells, 500, batch_key="batch")
    np.testing.assert_array_equal(keep, highly_variable_genes(cells, 500))
