"""scvi-tools modules: the torch models with their inference and losses."""

from ._protein_module import SSLProteinModule
from ._ssl_module import PRETEXTS, SSLModule

__all__ = ["PRETEXTS", "SSLModule", "SSLProteinModule"]
