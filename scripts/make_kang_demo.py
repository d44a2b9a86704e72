"""Build the embedded Kang demo subsample shipped in ``scssl/datasets/data``.

Run from the repository root:
``python scripts/make_kang_demo.py ../shared/data/kang_ifnb_pbmc.h5ad``.
3,000 random cells (seed 0), genes detected in at least 3 of them, counts stored as uint16 with
gzip compression to stay under 5 MB.
"""

import sys
from pathlib import Path

import anndata as ad
import numpy as np

N_CELLS = 3000
MIN_CELLS_PER_GENE = 3
OUT = Path("src/scssl/datasets/data/kang_ifnb_pbmc_3k.h5ad")


def main(source: str) -> None:
    """Write the subsample of ``source`` to ``OUT``."""
    full = ad.read_h5ad(source)
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(full.n_obs, N_CELLS, replace=False))
    demo = full[cells].copy()
    detected = np.asarray((demo.X > 0).sum(axis=0)).ravel() >= MIN_CELLS_PER_GENE
    demo = demo[:, detected].copy()
    counts = demo.X.tocsr()
    assert np.array_equal(counts.data, np.round(counts.data)) and counts.data.max() < 2**16
    counts.data = counts.data.astype(np.uint16)
    demo.X = counts
    demo.uns = {
        "source": str(full.uns.get("source", "Kang et al. 2018, GEO GSE96583")),
        "subsample": f"{N_CELLS} random cells (seed 0) of {full.n_obs}; genes in >= "
        f"{MIN_CELLS_PER_GENE} of them",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    demo.write_h5ad(OUT, compression="gzip", compression_opts=9)
    print(f"{OUT}: {demo.n_obs} cells x {demo.n_vars} genes, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
