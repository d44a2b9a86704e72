"""concat_datasets: several datasets on the union of their genes, with what each measured."""

import numpy as np
import pytest
import scipy.sparse as sp

import scssl
from scssl.data import MEASURED_GENES_KEY, concat_datasets


@pytest.fixture
def two_panels(kang_demo):
    """Real Kang cells as two datasets of overlapping gene panels; the first has two batches."""
    first = kang_demo[:300, :1500].copy()
    first.obs["batch"] = np.where(np.arange(300) < 150, "ctrl", "stim")
    second = kang_demo[300:500, 1000:2000].copy()
    return first, second


def test_cells_keep_their_counts_on_the_union_of_genes(two_panels):
    first, second = two_panels
    union = concat_datasets({"a": first, "b": second}, batch_key="batch")
    assert union.shape == (500, 2000)
    assert list(union.var_names) == list(first.var_names) + list(second.var_names[500:])
    assert sp.issparse(union.X)
    x = union.X.toarray()
    np.testing.assert_array_equal(x[:300, :1500], first.X.toarray())
    np.testing.assert_array_equal(x[300:, 1000:2000], second.X.toarray())
    assert x[:300, 1500:].sum() == 0 and x[300:, :1000].sum() == 0


def test_the_table_says_which_genes_each_batch_measured(two_panels):
    first, second = two_panels
    union = concat_datasets({"a": first, "b": second}, batch_key="batch")
    table = union.varm[MEASURED_GENES_KEY]
    assert list(table.columns) == ["a:ctrl", "a:stim", "b"]
    assert list(union.obs["batch"].cat.categories) == ["a:ctrl", "a:stim", "b"]
    assert table["a:ctrl"].to_numpy().tolist() == [True] * 1500 + [False] * 500
    assert table["b"].to_numpy().tolist() == [False] * 1000 + [True] * 1000
    assert union.obs["dataset"].tolist() == ["a"] * 300 + ["b"] * 200
    without_batches = concat_datasets({"a": first, "b": second})
    assert list(without_batches.varm[MEASURED_GENES_KEY].columns) == ["a", "b"]


def test_inputs_are_left_unchanged_and_clashing_cell_names_get_the_dataset(two_panels):
    first, second = two_panels
    second.obs_names = first.obs_names[:200]
    before = first.X.copy(), second.X.copy(), first.obs.copy()
    union = concat_datasets({"a": first, "b": second})
    assert union.obs_names.is_unique
    assert union.obs_names[0] == f"{first.obs_names[0]}-a"
    assert (first.X != before[0]).nnz == 0 and (second.X != before[1]).nnz == 0
    assert first.obs.equals(before[2])


def test_counts_come_from_the_layer_and_duplicated_genes_keep_the_first(two_panels):
    first, second = two_panels
    first.layers["counts"] = first.X.copy()
    first.X = first.X * 0
    second.layers["counts"] = second.X.copy()
    names = second.var_names.tolist()
    names[1] = names[0]
    second.var_names = names
    with pytest.warns(UserWarning, match="duplicated gene names"):
        union = concat_datasets({"a": first, "b": second}, layer="counts")
    kept = second.layers["counts"][:, np.r_[0, 2:1000]].sum()
    assert union.X.sum() == first.layers["counts"].sum() + kept


def test_clear_errors(two_panels):
    with pytest.raises(ValueError, match="datasets is empty"):
        concat_datasets({})
    first, second = two_panels
    with pytest.raises(ValueError, match=r"'a:ctrl' .* also a batch"):
        concat_datasets({"a": first, "a:ctrl": second}, batch_key="batch")


def test_an_existing_dataset_column_is_not_overwritten(two_panels):
    first, second = two_panels
    first.obs["dataset"] = "mine"
    with pytest.raises(ValueError, match="already has a 'dataset' column"):
        concat_datasets({"a": first, "b": second})
    assert "origin" in concat_datasets({"a": first, "b": second}, dataset_key="origin").obs


def test_public_name():
    assert scssl.data.concat_datasets is concat_datasets
