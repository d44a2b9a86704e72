"""What the scssl models share: gene vocabulary, one inference path, files, training set-up."""

from ._files import ModelFilesMixin, load_module_state, registered_batches
from ._inference import InferenceMixin, MinibatchStep
from ._model import SSLModelBase
from ._training import (
    DEFAULT_INFERENCE_BATCH_SIZE,
    adamw,
    adamw_plan,
    fit_options,
    fitting,
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
    "fit_options",
    "fitting",
    "load_module_state",
    "registered_batches",
    "validation_cells",
]
