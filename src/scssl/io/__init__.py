"""Published checkpoints (ssl_in_scg) and portable model files.

Everything here loads weights without running code from the files: ``torch.load`` with
``weights_only=True`` or safetensors.
"""

from ._genes import read_gene_list
from ._portable import (
    export_safetensors,
    import_safetensors,
    model_card,
    read_model_card,
    save_scvi_hub,
)
from ._safe_load import UnsafeCheckpointError, load_safetensors, load_torch_weights
from ._ssl_in_scg import (
    KINDS,
    SslInScgCheckpoint,
    SslInScgClassifier,
    classifier_from_ssl_in_scg,
    detect_kind,
    encoder_from_ssl_in_scg,
    read_ssl_in_scg,
    read_ssl_in_scg_classifier,
)

__all__ = [
    "KINDS",
    "SslInScgCheckpoint",
    "SslInScgClassifier",
    "UnsafeCheckpointError",
    "classifier_from_ssl_in_scg",
    "detect_kind",
    "encoder_from_ssl_in_scg",
    "export_safetensors",
    "import_safetensors",
    "load_safetensors",
    "load_torch_weights",
    "model_card",
    "read_gene_list",
    "read_model_card",
    "read_ssl_in_scg",
    "read_ssl_in_scg_classifier",
    "save_scvi_hub",
]
