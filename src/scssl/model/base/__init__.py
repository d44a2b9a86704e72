"""What the scssl models share: gene vocabulary, one inference path, files, training set-up."""

from ._files import ModelFilesMixin, load_module_state
from ._inference import InferenceMixin, MinibatchStep
from ._model import SSLModelBase
from ._training import (
    DEFAULT_INFERENCE_BATCH_SIZE,
    adamw,
    adamw_plan,
    checkpointing,
    interruptible,
    set_early_stopping,
    training_mode,
    validation_cells,
)
from ._vocabulary import GeneVocabularyMixin, batch_codes

__all__ = [
    "DEFAULT_INFERENCE_BATCH_SIZE",
    "GeneVocabularyMixin",
    "InferenceMixin",
    "MinibatchStep",
    "ModelFilesMixin",
    "SSLModelBase",
    "adamw",
    "adamw_plan",
    "batch_codes",
    "checkpointing",
    "interruptible",
    "load_module_state",
    "set_early_stopping",
    "training_mode",
    "validation_cells",
]
