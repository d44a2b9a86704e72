"""scvi-tools model classes."""

from ._ssl_encoder import SSLEncoder

__all__ = ["SSLEncoder"]
