"""Issue-14 GPU check: the same scssl code on CUDA, in fp32 and with bf16 autocast.

For each pretext (``random_mask``, ``gene_programme_mask`` with the built-in Hallmark sets,
``byol``, ``barlow_twins``) an :class:`scssl.model.SSLEncoder` is trained on the same cells
with Lightning's ``precision="32-true"`` and with ``"bf16-mixed"`` (seed 0 both), then once more
in fp32 with seed 1 (2 epochs, minibatches of 1,024, no early stopping). Recorded per run:

- training cells/s of the last epoch (a Lightning callback times its training steps only, the
  first epoch being warm-up), peak accelerator memory, and whether every training loss was
  finite (with the mean loss of the last epoch);
- ``get_latent_representation`` on the device the model trained on, without and with
  ``torch.autocast(dtype=torch.bfloat16)``: max absolute and relative (Frobenius) difference of
  the autocast embedding from the fp32 one (same weights), and the mean share of each cell's 15
  nearest neighbours the two embeddings have in common;
- for the bf16-trained model, the same neighbour agreement with the fp32-trained model's
  embedding, next to that of a second fp32 training with another seed (the floor: two
  trainings never agree fully; ``--no-floor`` skips it), and for every run the leave-one-out
  15-nearest-neighbour cell-type accuracy, a quality check that bf16 training is no worse.

Cells: the 3,000 real Kang PBMCs shipped with scssl (no download), restricted to the 2,000 most
variable genes and repeated (with binomial thinning of the counts, so that no two cells are
equal) to ``--cells``. Neighbours and accuracies use the 3,000 original cells.

A pretext that fails is recorded with its exception and the others go on. Writes
``gpu_check.json`` and ``gpu_check.md`` to ``--out`` and prints both::

    python3 benchmarks/gpu_check.py --out DIR         # CUDA, ~20,000 cells
    python3 benchmarks/gpu_check.py --out DIR --cpu   # CPU, tiny sizes (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # a checkout without `pip install -e`
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # if anything imports JAX

PRETEXTS = ("random_mask", "gene_programme_mask", "byol", "barlow_twins")
PRECISIONS = ("32-true", "bf16-mixed")
FLOOR = ("32-true", 1)  # a second fp32 training (another seed): what two trainings agree on
N_NEIGHBOURS = 15
T0 = time.perf_counter()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    for name in (
        "scvi-tools",
        "lightning",
        "anndata",
        "scanpy",
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    import scssl

    out["scssl"] = scssl.__version__
    out["scssl_path"] = str(Path(scssl.__file__).parent)
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        out["device"] = platform.processor() or platform.machine()
    return out


def _cells(n_cells: int, n_genes: int, seed: int = 0):
    """Kang demo cells, top ``n_genes`` by log1p variance, thinned copies up to ``n_cells``."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    import scssl

    demo = scssl.datasets.kang_ifnb_pbmc_demo()
    counts = sp.csr_matrix(demo.X)
    log = counts.multiply(1e4 / np.maximum(counts.sum(axis=1), 1)).tocsr()
    log.data = np.log1p(log.data)
    mean = np.asarray(log.mean(axis=0)).ravel()
    variance = np.asarray(log.multiply(log).mean(axis=0)).ravel() - mean**2
    keep = np.sort(np.argsort(-variance)[:n_genes])
    base = counts[:, keep].tocsr()
    n_base = min(base.shape[0], n_cells)
    blocks, rng = [base[:n_base]], np.random.default_rng(seed)
    while sum(b.shape[0] for b in blocks) < n_cells:
        copy = base[: n_cells - sum(b.shape[0] for b in blocks)].copy()
        copy.data = rng.binomial(copy.data.astype(np.int64), 0.9).astype(np.float32)
        copy.eliminate_zeros()
        blocks.append(copy)
    matrix = sp.vstack(blocks).tocsr().astype(np.float32)
    n = matrix.shape[0]
    labels = np.resize(demo.obs["cell_type"].astype(str).to_numpy()[:n_base], n)
    obs = {"cell_type": labels, "original": np.arange(n) < n_base}
    adata = ad.AnnData(matrix, obs=obs)
    adata.var_names = demo.var_names[keep].to_numpy()
    adata.obs_names = [f"cell{i}" for i in range(n)]
    return adata, n_base


def _timer(device_type: str):
    """Lightning callback: training steps of the last epoch timed, losses checked on device."""
    import torch
    from lightning.pytorch import Callback

    def sync():
        if device_type == "cuda":
            torch.cuda.synchronize()

    class Timer(Callback):
        def __init__(self):
            self.epoch_start = self.end = None
            self.cells, self.steps = 0, 0
            self.loss_sum = self.loss_n = None
            self.all_finite = None

        def on_train_epoch_start(self, trainer, pl_module):
            self.cells, self.steps, self.epoch_start = 0, 0, None
            self.loss_sum = torch.zeros((), device=pl_module.device)
            self.loss_n = 0
            if self.all_finite is None:
                self.all_finite = torch.ones((), dtype=torch.bool, device=pl_module.device)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.epoch_start is None:
                sync()
                self.epoch_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if loss is not None:
                loss = loss.detach().float()
                self.all_finite &= torch.isfinite(loss)
                self.loss_sum += loss
                self.loss_n += 1
            sync()
            self.end = time.perf_counter()
            self.cells += int(batch["X"].shape[0])
            self.steps += 1

        def result(self) -> dict:
            seconds = self.end - self.epoch_start
            return {
                "timed_steps": self.steps,
                "timed_cells": self.cells,
                "timed_seconds": seconds,
                "train_cells_per_s": self.cells / seconds,
                "loss_finite": bool(self.all_finite),
                "last_epoch_mean_loss": float(self.loss_sum) / max(self.loss_n, 1),
            }

    return Timer()


def _neighbours(z, k: int = N_NEIGHBOURS):
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return index[:, 1:]


def _overlap(a, b) -> float:
    """Mean share of each cell's neighbours found in both neighbour lists."""
    import numpy as np

    return float(np.mean([len(np.intersect1d(x, y)) / x.size for x, y in zip(a, b, strict=True)]))


def _label_accuracy(neighbours, labels) -> float:
    """Leave-one-out majority vote of the neighbours' labels."""
    import numpy as np

    votes = labels[neighbours]
    predicted = [max(set(row), key=list(row).count) for row in votes]
    return float(np.mean(np.asarray(predicted) == labels))


def _embed(model, device_type: str, autocast: bool, batch_size: int):
    import torch

    start = time.perf_counter()
    if autocast:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            z = model.get_latent_representation(batch_size=batch_size)
    else:
        z = model.get_latent_representation(batch_size=batch_size)
    return z, model.adata.n_obs / (time.perf_counter() - start)


def _compare(z, reference, neighbours, reference_neighbours) -> dict:
    import numpy as np

    difference = z.astype(np.float64) - reference.astype(np.float64)
    return {
        "max_abs_diff": float(np.abs(difference).max()),
        "rel_diff": float(np.linalg.norm(difference) / np.linalg.norm(reference)),
        "knn_overlap": _overlap(neighbours, reference_neighbours),
    }


def run_pretext(pretext: str, adata, n_base: int, args, device_type: str, root: Path) -> list:
    """Both precisions of one pretext; each run's record (with its error, if any)."""
    import numpy as np
    import scvi
    import torch

    import scssl

    labels = adata.obs["cell_type"].to_numpy()[:n_base]
    records, fp32_neighbours = [], None
    runs = [(precision, 0) for precision in PRECISIONS] + ([FLOOR] if args.floor else [])
    for precision, seed in runs:
        record = {"pretext": pretext, "precision": precision, "seed": seed}
        records.append(record)
        try:
            scvi.settings.seed = seed
            if device_type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            scssl.model.SSLEncoder.setup_anndata(adata)
            model = scssl.model.SSLEncoder(adata, pretext=pretext)
            timer = _timer(device_type)
            start = time.perf_counter()
            model.train(
                max_epochs=args.epochs,
                accelerator="cpu" if args.cpu else "gpu",
                devices=1,
                precision=precision,
                batch_size=args.batch_size,
                early_stopping=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[timer],
                default_root_dir=str(root),
            )
            record["fit_seconds"] = time.perf_counter() - start
            record.update(timer.result())
            record["model_device"] = str(model.device)
            if device_type == "cuda":
                record["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            z32, record["infer_fp32_cells_per_s"] = _embed(model, device_type, False, 1024)
            zbf, record["infer_bf16_cells_per_s"] = _embed(model, device_type, True, 1024)
            record["embedding_finite"] = bool(np.isfinite(z32).all() and np.isfinite(zbf).all())
            n32, nbf = _neighbours(z32[:n_base]), _neighbours(zbf[:n_base])
            record["autocast_vs_fp32_inference"] = _compare(zbf, z32, nbf, n32)
            record["knn_celltype_acc"] = _label_accuracy(n32, labels)
            if precision == "32-true" and seed == 0:
                fp32_neighbours = n32
            elif fp32_neighbours is not None:
                record["knn_overlap_vs_fp32_trained"] = _overlap(n32, fp32_neighbours)
        except Exception as error:  # recorded; the other runs go on
            record["error"] = f"{type(error).__name__}: {error}"
            record["traceback"] = traceback.format_exc()[-3000:]
            print(record["traceback"], file=sys.stderr, flush=True)
    return records


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def markdown(report: dict) -> str:
    env = report["versions"]
    lines = [
        f"# Issue-14 GPU check ({env.get('device')}, torch {env['torch']}, "
        f"scvi-tools {env['scvi-tools']}, lightning {env['lightning']})",
        "",
        f"{report['config']['cells']} cells x {report['config']['genes']} genes, "
        f"{report['config']['epochs']} epochs, batch {report['config']['batch_size']}; "
        f"train cells/s over the last epoch's steps; autocast columns: bf16-autocast "
        f"embedding vs fp32 embedding of the same model; kNN vs fp32-trained: the seed-0 "
        f"fp32 model's neighbours (the seed-1 fp32 row is the floor of two trainings); "
        f"total {report['seconds']:.0f} s.",
        "",
        "| pretext | precision | train cells/s | loss finite | last loss | peak GiB "
        "| infer cells/s fp32 / bf16 | autocast max abs | autocast rel | autocast kNN "
        "| kNN vs fp32-trained | 15-NN cell-type acc | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        auto = r.get("autocast_vs_fp32_inference", {})
        infer = (
            f"{_fmt(r.get('infer_fp32_cells_per_s'), ',.0f')} / "
            f"{_fmt(r.get('infer_bf16_cells_per_s'), ',.0f')}"
            if "infer_fp32_cells_per_s" in r
            else ""
        )
        seed = f" (seed {r['seed']})" if r.get("seed") else ""
        error = r.get("error", r.get("skipped", "")).replace("|", "/").replace("\n", " ")[:160]
        lines.append(
            f"| {r['pretext']} | {r['precision']}{seed} "
            f"| {_fmt(r.get('train_cells_per_s'), ',.0f')} "
            f"| {r.get('loss_finite', '')} | {_fmt(r.get('last_epoch_mean_loss'), '.4g')} "
            f"| {_fmt(r.get('peak_mem_gib'), '.2f')} | {infer} "
            f"| {_fmt(auto.get('max_abs_diff'), '.3g')} | {_fmt(auto.get('rel_diff'), '.3g')} "
            f"| {_fmt(auto.get('knn_overlap'), '.3f')} "
            f"| {_fmt(r.get('knn_overlap_vs_fp32_trained'), '.3f')} "
            f"| {_fmt(r.get('knn_celltype_acc'), '.3f')} | {error} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cpu", action="store_true", help="CPU smoke test at tiny sizes")
    parser.add_argument("--cells", type=int, help="default 21,000 (CUDA) or 600 (--cpu)")
    parser.add_argument("--genes", type=int, help="default 2,000 (CUDA) or 500 (--cpu)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="default 1,024 (CUDA) or 128 (--cpu)")
    parser.add_argument("--pretexts", nargs="+", default=list(PRETEXTS))
    parser.add_argument(
        "--budget", type=float, default=200.0, help="seconds; later pretexts are skipped after"
    )
    parser.add_argument("--no-floor", dest="floor", action="store_false")
    args = parser.parse_args(argv)
    args.cells = args.cells or (600 if args.cpu else 21_000)
    args.genes = args.genes or (500 if args.cpu else 2_000)
    args.batch_size = args.batch_size or (128 if args.cpu else 1024)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    device_type = "cpu" if args.cpu else "cuda"
    if device_type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available; use --cpu for the CPU smoke test.")
    versions = _versions()
    print(f"imports done in {time.perf_counter() - T0:.1f} s: {versions}", flush=True)
    adata, n_base = _cells(args.cells, args.genes)
    print(f"data: {adata.n_obs} x {adata.n_vars} ({n_base} original cells)", flush=True)

    results = []
    with tempfile.TemporaryDirectory() as root:
        for pretext in args.pretexts:
            if time.perf_counter() - T0 > args.budget:
                runs = [(p, 0) for p in PRECISIONS] + ([FLOOR] if args.floor else [])
                results += [
                    {"pretext": pretext, "precision": p, "seed": seed, "skipped": "time budget"}
                    for p, seed in runs
                ]
                continue
            start = time.perf_counter()
            results += run_pretext(pretext, adata, n_base, args, device_type, Path(root))
            print(f"{pretext}: {time.perf_counter() - start:.1f} s", flush=True)
    report = {
        "issue": 14,
        "config": {
            "device_type": device_type,
            "cells": adata.n_obs,
            "original_cells": n_base,
            "genes": adata.n_vars,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "neighbours": N_NEIGHBOURS,
            "floor_run": args.floor,
        },
        "versions": versions,
        "results": results,
        "seconds": time.perf_counter() - T0,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "gpu_check.md").write_text(table)
    slim = [{k: v for k, v in r.items() if k != "traceback"} for r in results]
    print(json.dumps({**report, "results": slim}, indent=2))
    print(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
