"""scvi-tools model classes."""

from ._label_transfer import (
    DEFAULT_PRETRAIN_TIME,
    query_positions,
    train_classifier,
    transfer_data,
)
from ._ssl_classifier import SSLClassifier
from ._ssl_encoder import SSLEncoder
from ._ssl_protein import SSLProteinPredictor

__all__ = [
    "DEFAULT_PRETRAIN_TIME",
    "SSLClassifier",
    "SSLEncoder",
    "SSLProteinPredictor",
    "query_positions",
    "train_classifier",
    "transfer_data",
]
