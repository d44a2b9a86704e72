import numpy as np
import pytest
import scipy.sparse as sp

import scssl
from scssl.model import SSLEncoder


def _snapshot(adata):
    return adata.X.copy(), adata.obs.copy(), adata.var.copy()


def _unchanged(adata, snapshot):
    x, obs, var = snapshot
    np.testing.assert_array_equal(adata.X.indices, x.indices)
    np.testing.assert_array_equal(adata.X.data, x.data)  # NaN positions compare equal here
    assert adata.obs.equals(obs) and adata.var.equals(var)


@pytest.mark.parametrize(
    ("value", "message"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-1.0, "negative"), (0.5, "non-integer")],
)
def test_bad_values_raise_clear_error_and_leave_adata_unchanged(small_kang, value, message):
    x = small_kang.X.tolil()
    x[3, 5] = value
    small_kang.X = x.tocsr()
    snapshot = _snapshot(small_kang)
    with pytest.raises(ValueError, match=message):
        SSLEncoder.setup_anndata(small_kang)
    _unchanged(small_kang, snapshot)


def test_non_integer_error_suggests_the_log_normalized_option(small_kang):
    small_kang.X = small_kang.X.multiply(0.3).tocsr()
    with pytest.raises(ValueError, match="log_normalized=True"):
        SSLEncoder.setup_anndata(small_kang)


def test_log_normalized_input_is_accepted_and_not_renormalised(small_kang):
    import scanpy as sc

    sc.pp.normalize_total(small_kang, target_sum=1e4)
    sc.pp.log1p(small_kang)
    snapshot = _snapshot(small_kang)
    SSLEncoder.setup_anndata(small_kang, log_normalized=True)
    model = SSLEncoder(small_kang, n_hidden=(32,), n_latent=4)
    assert model.module.log_normalized
    assert np.isfinite(model.get_latent_representation()).all()
    np.testing.assert_array_equal(small_kang.X.data, snapshot[0].data)  # not renormalised


@pytest.mark.parametrize("scale", [1.0, 0.87])
def test_counts_declared_log_normalized_are_refused(small_kang, scale):
    small_kang.X = small_kang.X.multiply(scale).tocsr()
    with pytest.raises(ValueError, match="looks like raw or scaled counts"):
        SSLEncoder.setup_anndata(small_kang, log_normalized=True)
    assert "_scvi_uuid" not in small_kang.uns


def test_empty_cells_warn_and_embed_without_nan(small_kang):
    x = small_kang.X.tolil()
    x[[0, 1], :] = 0
    small_kang.X = x.tocsr()
    with pytest.warns(UserWarning, match=r"2 of 600 cells"):
        SSLEncoder.setup_anndata(small_kang)
    model = SSLEncoder(small_kang, n_hidden=(32,), n_latent=4)
    model.train(max_epochs=1, enable_progress_bar=False, early_stopping=False)
    latent = model.get_latent_representation()
    assert np.isfinite(latent).all()
    np.testing.assert_array_equal(latent[0], latent[1])


def test_missing_layer_and_batch_key_raise_key_errors(small_kang):
    with pytest.raises(KeyError, match=r"layer='counts' is not in adata\.layers"):
        SSLEncoder.setup_anndata(small_kang, layer="counts")
    with pytest.raises(KeyError, match="batch_key='donor' is not a column"):
        SSLEncoder.setup_anndata(small_kang, batch_key="donor")


def test_empty_matrix_raises(small_kang):
    with pytest.raises(ValueError, match="empty"):
        SSLEncoder.setup_anndata(small_kang[:0].copy())


def test_duplicate_gene_names_warn(small_kang):
    names = small_kang.var_names.to_numpy().copy()
    names[1] = names[0]
    small_kang.var_names = names
    with pytest.warns(UserWarning, match="duplicated gene names"):
        SSLEncoder.setup_anndata(small_kang)


def test_counts_in_a_layer(small_kang):
    small_kang.layers["counts"] = small_kang.X.copy()
    small_kang.X = sp.csr_matrix(small_kang.X.multiply(0.1))
    SSLEncoder.setup_anndata(small_kang, layer="counts")
    model = SSLEncoder(small_kang, n_hidden=(32,), n_latent=4)
    assert model.get_latent_representation().shape == (600, 4)


def test_check_expression_matrix_reads_dense_input():
    dense = np.array([[0, 1, 2], [3, 0, 0]], dtype=np.float32)
    assert scssl.data.check_expression_matrix(dense) == 0


def test_numeric_labels_with_a_text_unlabeled_category_are_refused(kang_demo):
    from scssl.data._validation import check_label_column

    cells = kang_demo[:50].copy()
    cells.obs["type_id"] = cells.obs["cell_type"].cat.codes.astype(np.int64)
    with pytest.raises(ValueError, match=r"holds numbers \(int64\).*astype\(str\)"):
        check_label_column(cells, "type_id", "Unknown")
    check_label_column(cells, "type_id", -1)  # numbers with a numeric unlabeled category
    check_label_column(cells, "cell_type", "Unknown")


def test_cell_types_with_few_labelled_cells_are_named_at_the_users_line(kang_demo):
    cells = kang_demo[:400].copy()
    cells.obs["ct"] = cells.obs["cell_type"].astype(str)
    cells.obs.iloc[:2, cells.obs.columns.get_loc("ct")] = "Rare"
    cells.obs.iloc[2:300, cells.obs.columns.get_loc("ct")] = "Unknown"  # many unlabelled: fine
    with pytest.warns(UserWarning, match=r"fewer than 3 labelled cells: 'Rare' \(2\)") as caught:
        scssl.model.SSLClassifier.setup_anndata(cells, labels_key="ct")
    messages = [str(w.message) for w in caught]
    assert not any("_scvi_labels" in m for m in messages)  # scvi-tools' code-named warning
    assert all(w.filename == __file__ for w in caught if "labelled cells" in str(w.message))
    assert "'Unknown'" not in next(m for m in messages if "labelled cells" in m)
