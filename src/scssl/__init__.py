"""scssl: self-supervised learning for single-cell omics, for scvi-tools and scanpy."""

from . import benchmark, data, datasets, io, metrics, model, module, nn, pl, tl, train
from ._version import __version__

__all__ = [
    "__version__",
    "benchmark",
    "data",
    "datasets",
    "io",
    "metrics",
    "model",
    "module",
    "nn",
    "pl",
    "tl",
    "train",
]
