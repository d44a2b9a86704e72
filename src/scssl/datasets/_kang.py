"""Kang et al. 2018: PBMCs, control vs interferon-beta stimulated (GEO GSE96583)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ._download import download

KANG_URL = "https://figshare.com/ndownloader/files/34464122"
KANG_FILENAME = "kang_2018_pertpy.h5ad"
DEMO_FILENAME = "kang_ifnb_pbmc_3k.h5ad"


def _as_float_counts(adata: ad.AnnData) -> ad.AnnData:
    if sp.issparse(adata.X):
        counts = sp.csr_matrix(adata.X, dtype=np.float32)
        counts.indices = counts.indices.astype(np.int32)
        counts.indptr = counts.indptr.astype(np.int32)
        adata.X = counts
    else:
        adata.X = np.asarray(adata.X, dtype=np.float32)
    return adata


def _harmonise(adata: ad.AnnData) -> ad.AnnData:
    """Same obs columns whatever the source: ``stim`` (CTRL/STIM) and ``cell_type``."""
    if "stim" not in adata.obs and "label" in adata.obs:
        adata.obs["stim"] = adata.obs["label"].astype(str).str.upper().astype("category")
    missing = {"stim", "cell_type"} - set(adata.obs.columns)
    if missing:
        raise ValueError(
            f"The Kang file lacks obs columns {sorted(missing)}; expected 'stim' (or 'label') "
            "and 'cell_type'."
        )
    return adata


def kang_ifnb_pbmc(path: str | Path | None = None) -> ad.AnnData:
    """PBMCs of Kang et al. 2018, control (``stim == "CTRL"``) vs IFN-beta (``"STIM"``).

    Raw UMI counts in ``.X`` (CSR, float32), gene symbols as ``var_names``, ``obs['stim']`` and
    ``obs['cell_type']``.

    Parameters
    ----------
    path
        A local ``.h5ad`` of the data (e.g. the 13,999-cell SeuratData ``ifnb`` version with 13
        cell types). ``None`` downloads the public pertpy-processed file (24,673 cells, 8 cell
        types; ``label`` is renamed ``stim``) once into the cache (``$SCSSL_CACHE_DIR`` or
        ``~/.cache/scssl``).

    Raises
    ------
    ConnectionError
        When offline and the file is not cached.

    """
    source = Path(path) if path is not None else download(KANG_URL, KANG_FILENAME)
    if not source.exists():
        raise FileNotFoundError(f"No file at {source}.")
    return _as_float_counts(_harmonise(ad.read_h5ad(source)))


def kang_ifnb_pbmc_demo() -> ad.AnnData:
    """3,000 real Kang PBMCs shipped with scssl (no download).

    A random subsample (seed 0) of the 13,999-cell SeuratData ``ifnb`` version: raw counts of
    the 12,246 genes detected in at least 3 of the cells, ``obs['stim']`` (CTRL/STIM),
    ``obs['cell_type']`` (13 types) and ``obs['orig_ident']``.
    """
    with files("scssl.datasets").joinpath("data", DEMO_FILENAME).open("rb") as handle:
        adata = ad.read_h5ad(handle)
    return _as_float_counts(adata)
