"""Published checkpoints (ssl_in_scg) and portable model files.

Everything here loads weights without running code from the files: ``torch.load`` with
``weights_only=True`` or safetensors. The readers live in :mod:`scssl.checkpoints` (below the
models, which build themselves from them) and are re-exported here.
"""

from scssl.checkpoints import (
    KINDS,
    SslInScgCheckpoint,
    SslInScgClassifier,
    UnsafeCheckpointError,
    detect_kind,
    load_safetensors,
    load_torch_weights,
    read_gene_list,
    read_ssl_in_scg,
    read_ssl_in_scg_classifier,
)

from ._portable import (
    export_safetensors,
    import_safetensors,
    model_card,
    read_model_card,
    save_scvi_hub,
)

__all__ = [
    "KINDS",
    "SslInScgCheckpoint",
    "SslInScgClassifier",
    "UnsafeCheckpointError",
    "detect_kind",
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
