"""From cells to tensors: validation, gene vocabularies, normalisation, loading (memory, disk)."""

from ._loading import iterate_minibatches, to_torch
from ._normalize import TARGET_SUM, normalize_log1p
from ._sampler import BlockShuffleSampler
from ._shards import ShardedAnnData, read_shards
from ._soma import SOMADataModule, census_datamodule
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
    "BlockShuffleSampler",
    "GeneVocabulary",
    "SOMADataModule",
    "ShardedAnnData",
    "SparseDataSplitter",
    "align_to_vocabulary",
    "census_datamodule",
    "check_expression_matrix",
    "check_unique_var_names",
    "iterate_minibatches",
    "normalize_log1p",
    "read_shards",
    "reindex_columns",
    "to_torch",
]
