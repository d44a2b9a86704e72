"""From cells to tensors: validation, gene vocabularies and alignment, normalisation, loading."""

from ._gene_sets import (
    EncodedGeneSets,
    encode_gene_sets,
    encode_tf_programmes,
    load_gene_sets,
    read_gmt,
)
from ._loading import iterate_minibatches, to_torch
from ._normalize import TARGET_SUM, normalize_log1p
from ._splitter import SparseDataSplitter
from ._validation import check_expression_matrix, check_unique_var_names
from ._vocabulary import (
    AlignmentReport,
    GeneVocabulary,
    align_to_vocabulary,
    reindex_columns,
)

__all__ = [
    "TARGET_SUM",
    "AlignmentReport",
    "EncodedGeneSets",
    "GeneVocabulary",
    "SparseDataSplitter",
    "align_to_vocabulary",
    "check_expression_matrix",
    "check_unique_var_names",
    "encode_gene_sets",
    "encode_tf_programmes",
    "iterate_minibatches",
    "load_gene_sets",
    "normalize_log1p",
    "read_gmt",
    "reindex_columns",
    "to_torch",
]
