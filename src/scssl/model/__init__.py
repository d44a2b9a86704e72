"""scvi-tools model classes."""

from ._ssl_classifier import SSLClassifier
from ._ssl_encoder import SSLEncoder

__all__ = ["SSLClassifier", "SSLEncoder"]
