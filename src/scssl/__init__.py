"""scssl: self-supervised learning for single-cell omics, for scvi-tools and scanpy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scssl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from . import benchmark, data, datasets, model, module, nn, pl, tl, train

__all__ = [
    "__version__",
    "benchmark",
    "data",
    "datasets",
    "model",
    "module",
    "nn",
    "pl",
    "tl",
    "train",
]
