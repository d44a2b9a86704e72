"""Weight files read without running code: safe loading, the study's checkpoints, gene lists.

Everything here loads weights with ``torch.load(weights_only=True)`` or safetensors. It sits
below the model layer: models build themselves from what these readers return.
"""

from ._genes import read_gene_list
from ._model_file import read_model_file, write_model_file
from ._safe_load import UnsafeCheckpointError, load_safetensors, load_torch_weights
from ._ssl_in_scg import (
    KINDS,
    SslInScgCheckpoint,
    SslInScgClassifier,
    check_genes,
    detect_kind,
    read_class_names,
    read_ssl_in_scg,
    read_ssl_in_scg_classifier,
)

__all__ = [
    "KINDS",
    "SslInScgCheckpoint",
    "SslInScgClassifier",
    "UnsafeCheckpointError",
    "check_genes",
    "detect_kind",
    "load_safetensors",
    "load_torch_weights",
    "read_class_names",
    "read_gene_list",
    "read_model_file",
    "read_ssl_in_scg",
    "read_ssl_in_scg_classifier",
    "write_model_file",
]
