"""Every pretext task of the study on Kang PBMCs: label transfer, reconstruction, training time.

Each pretext pretrains an SSLEncoder (the study's architecture) on the Kang cells without labels,
10% of the cells held out. Scores:

- kNN (k=5) macro F1 and accuracy of label transfer from control to IFN-beta stimulated cells,
  on the embedding of all cells (the held-out ones included);
- weighted explained variance and MSE of the reconstruction of the held-out cells
  (log1p-normalised expression, masked pretexts only);
- training seconds per epoch.

The untrained encoder (same architecture, random weights) is the reference point. Each pretext
runs in its own process.

    python benchmarks/pretexts.py [--data ../shared/data/kang_ifnb_pbmc.h5ad] [--epochs 10]

Writes ``benchmarks/results/pretexts_kang.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
PRETEXTS = {
    "untrained": {"pretext": "random_mask"},
    "random_mask": {"pretext": "random_mask"},
    "random_mask_nb": {"pretext": "random_mask", "likelihood": "nb"},
    "gene_programme_mask": {"pretext": "gene_programme_mask", "gene_sets": "hallmark"},
    "programme_to_tf": {
        "pretext": "programme_to_tf",
        "gene_sets": str(SHARED / "gene_sets" / "collectri_tf_targets_human.gmt"),
    },
    "byol": {"pretext": "byol"},
    "barlow_twins": {"pretext": "barlow_twins"},
}


def run_pretext(name: str, data: str, epochs: int, batch_size: int, seed: int) -> dict:
    import scvi
    import torch

    import scssl
    from scssl.benchmark import (
        accuracy,
        knn_transfer,
        macro_f1,
        mean_squared_error,
        weighted_explained_variance,
    )
    from scssl.data import normalize_log1p

    scvi.settings.seed = seed
    adata = scssl.datasets.kang_ifnb_pbmc(data)
    rng = np.random.default_rng(seed)
    held_out = np.zeros(adata.n_obs, dtype=bool)
    held_out[rng.choice(adata.n_obs, adata.n_obs // 10, replace=False)] = True
    train = adata[~held_out].copy()
    scssl.model.SSLEncoder.setup_anndata(train)
    model = scssl.model.SSLEncoder(train, **PRETEXTS[name])
    result = {**{k: str(v) for k, v in PRETEXTS[name].items()}, "name": name}
    if name != "untrained":
        start = time.perf_counter()
        model.train(max_epochs=epochs, batch_size=batch_size, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        n_epochs = len(model.history["train_loss"])
        result.update(
            epochs_trained=n_epochs,
            seconds_per_epoch=seconds / n_epochs,
            train_cells_per_s=len(model.train_indices) * n_epochs / seconds,
        )
    embedding = model.get_latent_representation(adata)
    reference = (adata.obs["stim"] == "CTRL").to_numpy()
    labels = adata.obs["cell_type"].to_numpy()
    predicted, _ = knn_transfer(embedding[reference], labels[reference], embedding[~reference])
    result.update(
        macro_f1=macro_f1(labels[~reference], predicted),
        accuracy=accuracy(labels[~reference], predicted),
        n_cells=adata.n_obs,
        n_genes=adata.n_vars,
    )
    if model.module.has_decoder:
        held = adata[held_out]
        truth = normalize_log1p(torch.as_tensor(held.X.toarray())).numpy()
        reconstruction = model.get_reconstructed_expression(held, return_numpy=True)
        result.update(
            explained_variance_weighted=weighted_explained_variance(truth, reconstruction),
            reconstruction_mse=mean_squared_error(truth, reconstruction),
        )
    return result


def _merge_with_previous(path: Path, results: list[dict]) -> list[dict]:
    """Rows of an earlier run for pretexts not rerun now, in the order of ``PRETEXTS``."""
    rows = {r["name"]: r for r in results}
    if path.exists():
        for row in json.loads(path.read_text())["results"]:
            rows.setdefault(row["name"], row)
    return [rows[name] for name in PRETEXTS if name in rows]


def _markdown(results: list[dict], args) -> str:
    first = results[0]
    lines = [
        f"Kang PBMCs ({first['n_cells']} cells x {first['n_genes']} genes), up to {args.epochs} "
        f"epochs, batch {args.batch_size}, early stopping, seed {args.seed}, 2 CPU cores. "
        "kNN (k=5) label transfer CTRL -> STIM; reconstruction of 10% held-out cells "
        "(log1p space).",
        "",
        "| pretext | macro F1 | accuracy | explained variance (weighted) | MSE | epochs | "
        "s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ev = f"{r['explained_variance_weighted']:.3f}" if "reconstruction_mse" in r else "-"
        mse = f"{r['reconstruction_mse']:.4f}" if "reconstruction_mse" in r else "-"
        epochs = r.get("epochs_trained", 0)
        per_epoch = f"{r['seconds_per_epoch']:.0f}" if "seconds_per_epoch" in r else "-"
        lines.append(
            f"| {r['name']} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {ev} | {mse} | "
            f"{epochs} | {per_epoch} |"
        )
    return "\n".join(lines) + "\n"


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].bar(names, [r["macro_f1"] for r in results], color="tab:blue")
    axes[0].set_ylabel("kNN macro F1, CTRL -> STIM")
    masked = [r for r in results if "explained_variance_weighted" in r]
    axes[1].bar(
        [r["name"] for r in masked],
        [r["explained_variance_weighted"] for r in masked],
        color="tab:orange",
    )
    axes[1].set_ylabel("weighted explained variance\n(held-out cells)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_ha("right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(SHARED / "kang_ifnb_pbmc.h5ad"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--pretexts", nargs="+", default=list(PRETEXTS), choices=list(PRETEXTS))
    parser.add_argument("--only", choices=list(PRETEXTS), help="run one pretext (internal)")
    parser.add_argument("--out", default=str(RESULTS / "pretexts_kang"))
    args = parser.parse_args()

    common = ["--data", args.data, "--epochs", str(args.epochs), "--seed", str(args.seed)]
    common += ["--batch-size", str(args.batch_size)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    if args.only:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = run_pretext(args.only, args.data, args.epochs, args.batch_size, args.seed)
        print(json.dumps(result))
        return
    results = []
    for name in args.pretexts:
        print(f"running {name} ...", flush=True)
        completed = subprocess.run(
            [sys.executable, __file__, "--only", name, *common],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = _merge_with_previous(out.with_suffix(".json"), results)
    payload = {"task": "kang_pretexts", "epochs": args.epochs, "seed": args.seed}
    out.with_suffix(".json").write_text(json.dumps({**payload, "results": results}, indent=2))
    table = _markdown(results, args)
    out.with_suffix(".md").write_text(table)
    _plot(results, out.with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
