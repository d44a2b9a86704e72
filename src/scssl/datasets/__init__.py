"""Public datasets: downloaded once into a cache, or read from a local path."""

from ._download import cache_dir, download
from ._kang import kang_ifnb_pbmc, kang_ifnb_pbmc_demo
from ._ssl_in_scg import SslInScgFiles, list_ssl_in_scg_weights, ssl_in_scg_weights

__all__ = [
    "SslInScgFiles",
    "cache_dir",
    "download",
    "kang_ifnb_pbmc",
    "kang_ifnb_pbmc_demo",
    "list_ssl_in_scg_weights",
    "ssl_in_scg_weights",
]
