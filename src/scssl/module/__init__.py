"""scvi-tools modules: the torch models with their inference and losses."""

from ._classifier_module import ClassifierModule
from ._protein_module import SSLProteinModule
from ._ssl_module import PRETEXTS, SSLModule

__all__ = ["PRETEXTS", "ClassifierModule", "SSLModule", "SSLProteinModule"]
