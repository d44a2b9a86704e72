"""From cells to tensors: validation, gene vocabularies, normalisation, loading (memory, disk)."""

from ._gene_sets import (
    EncodedGeneSets,
    encode_gene_sets,
    encode_tf_programmes,
    load_gene_sets,
    pretext_programmes,
    read_gmt,
)
from ._genes import highly_variable_genes
from ._loading import iterate_minibatches, to_torch
from ._normalize import TARGET_SUM, normalize_log1p
from ._sampler import BlockShuffleSampler, LabelledMixSampler
from ._shards import ShardedAnnData, read_shards
from ._soma import SOMADataModule, census_datamodule
from ._splitter import SparseDataSplitter
from ._union import MEASURED_GENES_KEY, concat_datasets
from ._validation import (
    check_expression,
    check_expression_matrix,
    check_label_column,
    check_obs_column,
    check_unique_var_names,
    expression_matrix,
    warn_rare_labels,
)
from ._vocabulary import (
    DEFAULT_MIN_OVERLAP,
    AlignmentReport,
    GeneVocabulary,
    align_to_vocabulary,
    placeholder_anndata,
    reindex_columns,
    warn_ambiguous_symbols,
)

__all__ = [
    "DEFAULT_MIN_OVERLAP",
    "MEASURED_GENES_KEY",
    "TARGET_SUM",
    "AlignmentReport",
    "BlockShuffleSampler",
    "EncodedGeneSets",
    "GeneVocabulary",
    "LabelledMixSampler",
    "SOMADataModule",
    "ShardedAnnData",
    "SparseDataSplitter",
    "align_to_vocabulary",
    "census_datamodule",
    "check_expression",
    "check_expression_matrix",
    "check_label_column",
    "check_obs_column",
    "check_unique_var_names",
    "concat_datasets",
    "encode_gene_sets",
    "encode_tf_programmes",
    "expression_matrix",
    "highly_variable_genes",
    "iterate_minibatches",
    "load_gene_sets",
    "normalize_log1p",
    "placeholder_anndata",
    "pretext_programmes",
    "read_gmt",
    "read_shards",
    "reindex_columns",
    "to_torch",
    "warn_ambiguous_symbols",
    "warn_rare_labels",
]
