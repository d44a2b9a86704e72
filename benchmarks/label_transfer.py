"""Label transfer on Kang PBMCs, control -> IFN-beta stimulated, with speed and memory.

Reference: ``stim == "CTRL"`` cells with their ``cell_type``; query: ``stim == "STIM"`` cells.
Unsupervised embeddings (scssl SSLEncoder, PCA-50, scVI) are fit on all cells without labels,
then each query cell gets the majority label of its 5 nearest reference cells. Logistic
regression is trained on the reference's 2,000 most variable genes.

Each method runs in its own process so that its peak memory (max RSS) is its own.

    python benchmarks/label_transfer.py [--data ../shared/data/kang_ifnb_pbmc.h5ad] [--epochs 30]

Writes ``benchmarks/results/label_transfer_kang.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
METHODS = ("scssl", "pca", "scvi", "logreg")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_method(method: str, data: str, epochs: int, seed: int) -> dict:
    import scssl
    from scssl.benchmark import (
        accuracy,
        knn_transfer,
        logistic_regression_transfer,
        macro_f1,
        pca_embedding,
        scvi_embedding,
    )

    adata = scssl.datasets.kang_ifnb_pbmc(data)
    rss_data = _peak_rss_mb()
    reference = (adata.obs["stim"] == "CTRL").to_numpy()
    labels = adata.obs["cell_type"].to_numpy()
    result: dict = {"method": method, "n_cells": adata.n_obs, "n_genes": adata.n_vars}
    start = time.perf_counter()
    if method == "logreg":
        predicted = logistic_regression_transfer(
            adata[reference], labels[reference], adata[~reference], seed=seed
        )
    else:
        if method == "pca":
            embedding = pca_embedding(adata, seed=seed)
        elif method == "scssl":
            import scvi

            scvi.settings.seed = seed
            scssl.model.SSLEncoder.setup_anndata(adata)
            model = scssl.model.SSLEncoder(adata)
            t0 = time.perf_counter()
            model.train(max_epochs=epochs, enable_progress_bar=False)
            result.update(_training_speed(model, time.perf_counter() - t0))
            t0 = time.perf_counter()
            embedding = model.get_latent_representation()
            result["inference_cells_per_s"] = adata.n_obs / (time.perf_counter() - t0)
        elif method == "scvi":
            t0 = time.perf_counter()
            embedding, model = scvi_embedding(adata, max_epochs=epochs, seed=seed)
            result.update(_training_speed(model, time.perf_counter() - t0))
            t0 = time.perf_counter()
            model.get_latent_representation()
            result["inference_cells_per_s"] = adata.n_obs / (time.perf_counter() - t0)
        predicted, _ = knn_transfer(embedding[reference], labels[reference], embedding[~reference])
    result["seconds_total"] = time.perf_counter() - start
    result["macro_f1"] = macro_f1(labels[~reference], predicted)
    result["accuracy"] = accuracy(labels[~reference], predicted)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["rss_after_loading_data_mb"] = rss_data
    return result


def _training_speed(model, seconds: float) -> dict:
    epochs = len(model.history["train_loss"])
    n_train = len(model.train_indices)
    return {
        "epochs_trained": epochs,
        "train_seconds": seconds,
        "train_cells_per_s": n_train * epochs / seconds,
    }


def _markdown(results: list[dict], args) -> str:
    lines = [
        f"Kang PBMC label transfer CTRL -> STIM ({results[0]['n_cells']} cells x "
        f"{results[0]['n_genes']} genes), kNN k=5 on embeddings; 2 CPU cores; "
        f"max {args.epochs} epochs for the neural models (early stopping on for scssl).",
        "",
        "| method | macro F1 | accuracy | train cells/s | inference cells/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "scssl": "scssl SSLEncoder (random mask) + kNN",
        "pca": "PCA-50 on 2,000 HVGs + kNN",
        "scvi": "scVI + kNN",
        "logreg": "logistic regression, 2,000 HVGs",
    }
    for r in results:
        train = f"{r['train_cells_per_s']:.0f}" if "train_cells_per_s" in r else "-"
        infer = f"{r['inference_cells_per_s']:.0f}" if "inference_cells_per_s" in r else "-"
        lines.append(
            f"| {names[r['method']]} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {train} | "
            f"{infer} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", default=str(Path(__file__).parents[1] / "../shared/data/kang_ifnb_pbmc.h5ad")
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, help="run one method (used internally)")
    parser.add_argument("--out", default=str(RESULTS / "label_transfer_kang"))
    args = parser.parse_args()

    if args.method:
        print(json.dumps(run_method(args.method, args.data, args.epochs, args.seed)))
        return
    results = []
    for method in METHODS:
        print(f"running {method} ...", flush=True)
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--method",
                method,
                "--data",
                args.data,
                "--epochs",
                str(args.epochs),
                "--seed",
                str(args.seed),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    scssl_row = next(r for r in results if r["method"] == "scssl")
    scvi_row = next(r for r in results if r["method"] == "scvi")
    summary = {
        "train_throughput_ratio_scssl_over_scvi": scssl_row["train_cells_per_s"]
        / scvi_row["train_cells_per_s"],
        "inference_throughput_ratio_scssl_over_scvi": scssl_row["inference_cells_per_s"]
        / scvi_row["inference_cells_per_s"],
        "peak_rss_ratio_scssl_over_scvi": scssl_row["peak_rss_mb"] / scvi_row["peak_rss_mb"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "task": "kang_ctrl_to_stim",
        "epochs": args.epochs,
        "seed": args.seed,
        "results": results,
        "summary": summary,
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    table = (
        _markdown(results, args)
        + "\n"
        + "\n".join(f"- {k}: {v:.2f}" for k, v in summary.items())
        + "\n"
    )
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
