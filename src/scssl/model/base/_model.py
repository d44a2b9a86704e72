"""The base class of the scssl models: the shared mixins, splitter and data check."""

from __future__ import annotations

from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scssl.data import SparseDataSplitter
from scssl.train import SSLTrainingPlan

from ._files import ModelFilesMixin
from ._inference import InferenceMixin
from ._vocabulary import GeneVocabularyMixin


class SSLModelBase(
    ModelFilesMixin,
    InferenceMixin,
    GeneVocabularyMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """A scvi-tools model on sparse minibatches with scssl's files, inference and vocabulary.

    Subclasses set ``_module_cls`` and ``_missing_data`` (the error for ``adata=None``, which
    says how to register data).
    """

    _data_splitter_cls = SparseDataSplitter
    _training_plan_cls = SSLTrainingPlan
    #: The ``ValueError`` message when the model is built without data.
    _missing_data = "This model needs registered data."

    def __init__(self, adata):
        if adata is None:
            raise ValueError(self._missing_data)
        super().__init__(adata)
