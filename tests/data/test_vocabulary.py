import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scssl.data import GeneVocabulary, align_to_vocabulary, reindex_columns


def _adata(genes, values=None, var=None):
    n = len(genes)
    values = (
        np.arange(1, n + 1, dtype=np.float32)[None, :].repeat(3, 0) if values is None else values
    )
    return ad.AnnData(
        X=sp.csr_matrix(values), var=var if var is not None else pd.DataFrame(index=genes)
    )


def test_reorder_missing_and_extra_genes_by_symbol():
    vocab = GeneVocabulary(["CD3E", "MS4A1", "LYZ", "NKG7"])
    query = _adata(["lyz", "EXTRA", "CD3E", "NKG7"])
    aligned, report = align_to_vocabulary(query, vocab, min_overlap=0.5)
    assert list(aligned.var_names) == ["CD3E", "MS4A1", "LYZ", "NKG7"]
    np.testing.assert_array_equal(aligned.X.toarray()[0], [3, 0, 1, 4])
    assert sp.issparse(aligned.X)
    assert (report.n_matched, report.n_missing, report.n_unused) == (3, 1, 1)
    assert report.matched_by == "gene symbol"
    assert report.missing_examples == ["MS4A1"] and report.unused_examples == ["EXTRA"]


def test_ensembl_ids_with_version_suffix_are_preferred():
    vocab = GeneVocabulary(["CD3E", "LYZ"], ["ENSG00000198851", "ENSG00000090382"])
    var = pd.DataFrame(
        {"gene_symbols": ["WRONG1", "WRONG2"]},
        index=["ENSG00000090382.7", "ENSG00000198851.10"],
    )
    aligned, report = align_to_vocabulary(_adata(list(var.index), var=var), vocab)
    assert report.matched_by == "Ensembl ID" and report.n_matched == 2
    np.testing.assert_array_equal(aligned.X.toarray()[0], [2, 1])


def test_ensembl_ids_found_in_a_var_column():
    vocab = GeneVocabulary(["CD3E", "LYZ"], ["ENSG00000198851", "ENSG00000090382"])
    var = pd.DataFrame({"gene_ids": ["ENSG00000090382", "ENSG00000198851"]}, index=["a", "b"])
    aligned, report = align_to_vocabulary(_adata(["a", "b"], var=var), vocab)
    assert report.matched_by == "Ensembl ID"
    np.testing.assert_array_equal(aligned.X.toarray()[0], [2, 1])


def test_duplicate_symbols_take_the_first_occurrence_and_are_reported():
    vocab = GeneVocabulary(["EMG1", "SOD2"])
    query = _adata(["EMG1", "SOD2", "EMG1"])
    aligned, report = align_to_vocabulary(query, vocab)
    np.testing.assert_array_equal(aligned.X.toarray()[0], [1, 2])
    assert report.n_duplicates_ignored == 1 and report.n_unused == 0


def test_low_overlap_is_refused_with_the_count():
    vocab = GeneVocabulary([f"G{i}" for i in range(10)])
    query = _adata(["G1", "G2", "OTHER"])
    with pytest.raises(ValueError, match=r"Only 2 of 10 model genes \(20.0%\)"):
        align_to_vocabulary(query, vocab, min_overlap=0.5)
    aligned, _ = align_to_vocabulary(query, vocab, min_overlap=0.1)
    assert aligned.shape == (3, 10)


def test_alignment_leaves_the_input_unchanged():
    query = _adata(["B", "A"])
    before = query.X.toarray().copy()
    align_to_vocabulary(query, GeneVocabulary(["A", "B"]))
    np.testing.assert_array_equal(query.X.toarray(), before)
    assert list(query.var_names) == ["B", "A"]


def test_reindex_columns_dense_and_sparse_agree():
    rng = np.random.default_rng(0)
    dense = rng.poisson(1.0, size=(5, 6)).astype(np.float32)
    index = np.array([5, -1, 0, 2])
    expected = np.zeros((5, 4), dtype=np.float32)
    expected[:, [0, 2, 3]] = dense[:, [5, 0, 2]]
    np.testing.assert_array_equal(reindex_columns(dense, index), expected)
    np.testing.assert_array_equal(reindex_columns(sp.csr_matrix(dense), index).toarray(), expected)


def test_vocabulary_round_trips_through_a_dict():
    vocab = GeneVocabulary(["A", "B"], ["ENSG00000000001", "ENSG00000000002"])
    assert GeneVocabulary.from_dict(vocab.to_dict()) == vocab


def test_a_backed_matrix_is_reindexed_in_blocks(kang_demo, tmp_path, monkeypatch):
    from scssl.data import _validation, _vocabulary

    cells = kang_demo[:250, :300].copy()
    cells.write_h5ad(tmp_path / "cells.h5ad")
    backed = ad.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    index = np.array([5, -1, 0, 299, 17])
    monkeypatch.setattr(_validation, "_CHUNK_ROWS", 100)  # three blocks
    out = _vocabulary.reindex_columns(backed.X, index)
    expected = _vocabulary.reindex_columns(cells.X, index)
    assert out.shape == (250, 5) and (out != expected).nnz == 0


def test_a_vocabulary_repeating_a_gene_counts_the_datas_unused_genes_right():
    vocabulary = GeneVocabulary(["A", "B", "B", "C"])  # a model trained on repeated names
    index, report = vocabulary.source_index(_adata(["A", "B", "D"]))
    np.testing.assert_array_equal(index, [0, 1, 1, -1])
    assert report.n_matched == 3 and report.n_unused == 1  # D; was 3 - 3 - 0 = 0
    index, report = vocabulary.source_index(_adata(["A", "B"]))
    assert report.n_unused == 0  # was -1
    assert "-1" not in str(report)


def test_an_in_memory_view_is_not_read_as_backed():
    from scssl.data import _vocabulary

    dense = ad.AnnData(X=np.arange(12, dtype=np.float32).reshape(4, 3))
    view = dense[:2].X  # anndata's ArrayView
    assert not _vocabulary._is_backed(view)
    np.testing.assert_array_equal(reindex_columns(view, np.array([2, -1])), [[2, 0], [5, 0]])
