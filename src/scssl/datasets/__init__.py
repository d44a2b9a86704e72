"""Public datasets: downloaded once into a cache, or read from a local path."""

from ._download import cache_dir, download
from ._kang import kang_ifnb_pbmc, kang_ifnb_pbmc_demo

__all__ = ["cache_dir", "download", "kang_ifnb_pbmc", "kang_ifnb_pbmc_demo"]
