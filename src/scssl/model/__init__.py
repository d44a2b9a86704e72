"""scvi-tools model classes."""

from ._label_transfer import train_classifier, transfer_data
from ._ssl_classifier import SSLClassifier
from ._ssl_encoder import SSLEncoder
from ._ssl_protein import SSLProteinPredictor

__all__ = [
    "SSLClassifier",
    "SSLEncoder",
    "SSLProteinPredictor",
    "train_classifier",
    "transfer_data",
]
