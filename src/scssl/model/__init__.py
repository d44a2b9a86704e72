"""scvi-tools model classes."""

from ._label_transfer import (
    CLASSIFIER_ENCODER_KWARGS,
    DEFAULT_PRETRAIN_TIME,
    ZERO_SHOT_ENCODER_KWARGS,
    finetune_classifier,
    pretrain_encoder,
    query_positions,
    reference_labels,
    reference_positions,
    train_classifier,
    transfer_data,
)
from ._label_transfer import LABELS as TRANSFER_LABELS_KEY
from ._ssl_classifier import SSLClassifier
from ._ssl_encoder import SSLEncoder
from ._ssl_protein import SSLProteinPredictor

__all__ = [
    "CLASSIFIER_ENCODER_KWARGS",
    "DEFAULT_PRETRAIN_TIME",
    "TRANSFER_LABELS_KEY",
    "ZERO_SHOT_ENCODER_KWARGS",
    "SSLClassifier",
    "SSLEncoder",
    "SSLProteinPredictor",
    "finetune_classifier",
    "pretrain_encoder",
    "query_positions",
    "reference_labels",
    "reference_positions",
    "train_classifier",
    "transfer_data",
]
