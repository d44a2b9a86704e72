"""The label-transfer benchmark's tasks: datasets, labels, batches and folds.

``load_task`` gives each task of ``benchmarks/label_transfer.py`` (its module docstring
describes them); the other benchmark scripts explore parts of it through ``exploration_task``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def hvg_cells(adata, batch_key: str, n_genes: int = 2000):
    """A copy of ``adata`` on its ``n_genes`` batch-aware most variable genes (``seurat_v3`` on
    counts): the genes of scssl's pretraining and of scVI here, and of a ``--genes`` panel."""
    from scssl.data import highly_variable_genes

    return adata[:, highly_variable_genes(adata, n_genes, batch_key=batch_key)].copy()


def load_task(
    task: str, data_dir: Path, max_cells: int | None, seed: int, genes: int | None = None
):
    """AnnData, labels key, batch key and folds ``[(name, reference mask)]``.

    ``genes``: keep only this many batch-aware most variable genes (of all cells), as a
    targeted panel would; every method then sees those genes alone.
    """
    import anndata as ad

    import scssl

    if task == "kang":
        adata = scssl.datasets.kang_ifnb_pbmc(data_dir / "kang_ifnb_pbmc.h5ad")
        batch_key = "stim"
    elif task == "pbmc3tech":
        adata = ad.read_h5ad(data_dir / "pbmc_3tech.h5ad")
        batch_key = "batch"
    elif task in ("kang2pbmc3tech", "pbmc3tech2kang"):
        adata = kang_and_pbmc3tech(data_dir)
        if task == "pbmc3tech2kang":  # pbmc_3tech has no erythrocytes to annotate them with
            adata = adata[adata.obs["cell_type"] != "Eryth"].copy()
        batch_key = "batch"
    else:
        raise ValueError(task)
    if max_cells is not None and adata.n_obs > max_cells:
        keep = np.random.default_rng(seed).choice(adata.n_obs, max_cells, replace=False)
        adata = adata[np.sort(keep)].copy()
    adata.obs[batch_key] = adata.obs[batch_key].astype(str).astype("category")
    if genes is not None:
        adata = hvg_cells(adata, batch_key, genes)
    if task == "kang":
        folds = [("CTRL->STIM", (adata.obs["stim"] == "CTRL").to_numpy())]
    elif task == "kang2pbmc3tech":
        folds = [("Kang->pbmc_3tech", (adata.obs["study"] == "Kang").to_numpy())]
    elif task == "pbmc3tech2kang":
        folds = [("pbmc_3tech->Kang", (adata.obs["study"] == "pbmc_3tech").to_numpy())]
    else:
        folds = [
            (f"->{b}", (adata.obs[batch_key] != b).to_numpy())
            for b in sorted(adata.obs[batch_key].unique())
        ]
    return adata, "cell_type", batch_key, folds


#: Kang's cell types under pbmc_3tech's names; "T activated" (CD4 or CD8) is left out.
KANG_AS_PBMC3TECH = {
    "B": "B",
    "B Activated": "B",
    "CD14 Mono": "Mono_CD14",
    "CD16 Mono": "Mono_CD16",
    "CD4 Memory T": "T_CD4",
    "CD4 Naive T": "T_CD4",
    "CD8 T": "T_CD8",
    "DC": "DC",
    "pDC": "DC",
    "Mk": "MK",
    "NK": "NK",
    "Eryth": "Eryth",
}


def kang_and_pbmc3tech(data_dir: Path):
    """Kang (both conditions) and pbmc_3tech on their shared genes, for annotating one study
    from another: Kang's labels renamed to pbmc_3tech's (``KANG_AS_PBMC3TECH``; its activated T
    cells left out, its erythrocytes kept, a type the query lacks), pbmc_3tech's three HSCs
    left out (no type of Kang's); ``batch`` is Kang's condition or pbmc_3tech's chemistry,
    ``study`` the dataset."""
    import anndata as ad

    import scssl

    kang = scssl.datasets.kang_ifnb_pbmc(data_dir / "kang_ifnb_pbmc.h5ad")
    kang = kang[kang.obs["cell_type"].astype(str).isin(list(KANG_AS_PBMC3TECH))]
    tech = ad.read_h5ad(data_dir / "pbmc_3tech.h5ad")
    tech = tech[tech.obs["cell_type"].astype(str) != "HSC"]
    genes = kang.var_names.intersection(tech.var_names)
    parts = {}
    for study, part, batch, labels in (
        (
            "Kang",
            kang,
            "Kang " + kang.obs["stim"].astype(str),
            kang.obs["cell_type"].astype(str).map(KANG_AS_PBMC3TECH),
        ),
        ("pbmc_3tech", tech, tech.obs["batch"].astype(str), tech.obs["cell_type"].astype(str)),
    ):
        cells = ad.AnnData(
            part[:, genes].X.copy(), obs=part.obs[[]].copy(), var=part.var[[]].loc[genes]
        )
        cells.obs["cell_type"], cells.obs["batch"], cells.obs["study"] = labels, batch, study
        parts[study] = cells
    return ad.concat(parts, index_unique="-")


def exploration_task(task: str, data_dir: Path, genes: int | None = None):
    """The start of a script that explores one part of this benchmark: 2 threads, no data-loader
    workers, warnings off, and the task's AnnData (all cells; ``genes``: as ``--genes``),
    labels, batch key and folds."""
    import warnings

    import scvi
    import torch

    torch.set_num_threads(2)
    scvi.settings.dl_num_workers = 0
    warnings.filterwarnings("ignore")
    adata, labels_key, batch_key, folds = load_task(task, data_dir, None, 0, genes)
    return adata, adata.obs[labels_key].astype(str).to_numpy(), batch_key, folds
