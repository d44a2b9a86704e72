"""Speed: training and inference cells/s of scssl against scVI, and quality per minute.

Kang PBMCs (13,999 cells x 14,053 genes, sparse counts), on the machine that runs it.

- ``throughput``: every pretext of SSLEncoder and scVI, each in its own process (peak RSS is
  its own), at all genes and at 2,000 highly variable genes, at each model's default batch size
  and at 1,024: training cells/s over ``--steps`` minibatches after ``--warmup`` steps (a
  Lightning callback times the steps only), then ``get_latent_representation`` cells/s at equal
  batch sizes (128 and 1,024).
- ``inference``: scVI's and SSLEncoder's ``get_latent_representation`` in one process,
  alternating, median of ``--repeats`` runs at batch 128 and 1,024 (one-shot timings in separate
  processes varied by up to 1.6x for the same model).
- ``quality``: SSLEncoder with its defaults pretrained on all Kang cells (no labels) for 10
  minutes; after 1, 2, 5 and 10 minutes of training (the clock stops while it is scored) the
  embedding transfers labels CTRL -> STIM by 5-nearest neighbours, scored by macro F1. Run it
  on another scssl (``PYTHONPATH=<checkout>/src``) with another ``--label`` for a before/after
  comparison: it uses only the public API.
- ``report``: ``benchmarks/results/speed.{json,md,png}`` from what was measured.

Timings need a quiet machine (nothing else running)::

    python benchmarks/speed.py throughput --threads 2
    python benchmarks/speed.py inference
    python benchmarks/speed.py quality --label after
    PYTHONPATH=/tmp/scssl-before/src python benchmarks/speed.py quality --label before
    python benchmarks/speed.py report
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import StepTimer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parent / ".." / "shared" / "data"
KANG = SHARED / "kang_ifnb_pbmc.h5ad"
TF_GMT = SHARED / "gene_sets" / "collectri_tf_targets_human.gmt"
PRETEXTS = ("random_mask", "gene_programme_mask", "programme_to_tf", "byol", "barlow_twins")
SCVI_DEFAULT_BATCH = 128
MARKS_MINUTES = (1, 2, 5, 10)
INFERENCE_BATCHES = (128, 1024)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _kang(genes: str):
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(KANG)
    if genes == "all":
        return adata
    log = adata.copy()
    sc.pp.normalize_total(log, target_sum=1e4)
    sc.pp.log1p(log)
    keep = sc.pp.highly_variable_genes(log, n_top_genes=int(genes), inplace=False)
    return adata[:, keep["highly_variable"].to_numpy()].copy()


def _model(method: str, adata, model_kwargs: dict | None = None):
    """An SSLEncoder of a pretext (defaults otherwise) or scVI, set up on ``adata``."""
    import scvi

    import scssl

    if method == "scvi":
        scvi.model.SCVI.setup_anndata(adata)
        return scvi.model.SCVI(adata)
    scssl.model.SSLEncoder.setup_anndata(adata)
    gene_sets = str(TF_GMT) if method == "programme_to_tf" else None
    return scssl.model.SSLEncoder(
        adata, pretext=method, gene_sets=gene_sets, **(model_kwargs or {})
    )


def measure(
    method: str,
    genes: str,
    batch_size: int | None,
    steps: int,
    warmup: int,
    model_kwargs: dict | None = None,
) -> dict:
    """Training cells/s (``batch_size=None``: the model's default), then inference cells/s."""
    import inspect

    import scvi

    scvi.settings.seed = 0
    adata = _kang(genes)
    model = _model(method, adata, model_kwargs)
    if batch_size is None:
        batch_size = inspect.signature(model.train).parameters["batch_size"].default
    timer = StepTimer(warmup)
    model.train(
        max_epochs=1000,
        max_steps=warmup + steps,
        batch_size=batch_size,
        train_size=1.0,
        early_stopping=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        callbacks=[timer],
    )
    result = {
        "method": method,
        "genes": int(adata.n_vars),
        "batch_size": batch_size,
        "model_kwargs": model_kwargs or {},
        "train_cells_per_s": timer.cells / (timer.end - timer.start),
        "train_peak_rss_mb": _peak_rss_mb(),
    }
    for inference_batch in INFERENCE_BATCHES:
        result[f"infer_{inference_batch}_cells_per_s"] = _embedding_rate(model, inference_batch)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _embedding_rate(model, batch_size: int) -> float:
    """Cells/s of ``get_latent_representation`` over all of the model's cells."""
    start = time.perf_counter()
    model.get_latent_representation(batch_size=batch_size)
    return model.adata.n_obs / (time.perf_counter() - start)


def _child(args, method: str, genes: str, batch_size: int | None) -> dict:
    cmd = [sys.executable, __file__, "_measure", method, genes, str(batch_size or 0)]
    cmd += [
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--model-kwargs",
        args.model_kwargs,
    ]
    print(f"[speed] {method} genes={genes} batch={batch_size or 'default'} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"method": method, "genes": genes, "error": proc.stderr.strip().splitlines()[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[speed]   train {result['train_cells_per_s']:.0f} cells/s", flush=True)
    return result


def throughput(args) -> None:
    rows = []
    for genes in ("all", "2000"):
        for method in args.methods:
            for batch_size in (None, 1024):
                rows.append(_child(args, method, genes, batch_size))
    _save(f"throughput{args.suffix}", {"rows": rows, "threads": args.threads, "steps": args.steps})


def inference(args) -> None:
    """Embedding cells/s of scVI and SSLEncoder in one process, interleaved, median of repeats.

    The throughput runs time each model's inference once, in its own process, where it varied
    by up to 1.6x between processes of the same model (scVI 14,121-22,974 cells/s at batch
    1,024); alternating the two models in one process compares them under the same conditions.
    """
    import torch

    torch.set_num_threads(args.threads)
    adata = _kang("all")
    models = {method: _model(method, adata.copy()) for method in ("scvi", "random_mask")}
    for model in models.values():
        model.is_trained_ = True  # speed does not depend on the weights
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for batch_size in INFERENCE_BATCHES:
            for method, model in models.items():
                rate = _embedding_rate(model, batch_size)
                times.setdefault((method, batch_size), []).append(rate)
    rows = [
        {
            "method": method,
            "batch_size": batch_size,
            "median_cells_per_s": float(np.median(values)),
            "runs": values,
        }
        for (method, batch_size), values in times.items()
    ]
    for row in rows:
        print(f"[speed] {row['method']} batch {row['batch_size']}: {row['median_cells_per_s']:.0f}")
    _save("inference", {"rows": rows, "threads": args.threads, "repeats": args.repeats})


# ----------------------------------------------------------------- quality
def quality(args) -> None:
    """kNN macro F1 after each mark of training minutes (scoring time excluded)."""
    import scvi
    import torch
    from lightning.pytorch import Callback
    from sklearn.metrics import f1_score
    from sklearn.neighbors import KNeighborsClassifier

    import scssl

    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    adata = _kang("all")
    reference = (adata.obs["stim"] == "CTRL").to_numpy()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    scssl.model.SSLEncoder.setup_anndata(adata)
    model = scssl.model.SSLEncoder(adata, **json.loads(args.model_kwargs))
    marks = [60 * m for m in args.minutes]
    points = []

    def score() -> float:
        was_training = model.module.training
        z = model.get_latent_representation()
        model.module.train(was_training)
        knn = KNeighborsClassifier(n_neighbors=5).fit(z[reference], labels[reference])
        predicted = knn.predict(z[~reference])
        truth = labels[~reference]
        return float(f1_score(truth, predicted, labels=np.unique(truth), average="macro"))

    class Clock(Callback):
        def __init__(self):
            self.elapsed, self.last, self.epochs = 0.0, None, 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.last = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.elapsed += time.perf_counter() - self.last
            if marks and self.elapsed >= marks[0]:
                minutes = marks.pop(0) / 60
                points.append(
                    {"minutes": minutes, "macro_f1": score(), "epoch": trainer.current_epoch}
                )
                print(f"[speed] {args.label}: {points[-1]}", flush=True)
                if not marks:
                    trainer.should_stop = True

    options = json.loads(args.train_kwargs)
    model.train(max_epochs=100000, enable_progress_bar=False, callbacks=[Clock()], **options)
    payload = {
        "label": args.label,
        "points": points,
        "train_kwargs": options,
        "seed": args.seed,
        "precision": str(getattr(getattr(model, "trainer", None), "precision", None)),
        "model_kwargs": json.loads(args.model_kwargs),
    }
    _save(f"quality_{args.label}", {**payload, "scssl": scssl.__version__})


# ------------------------------------------------------------------ report
def _save(name: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload["machine"] = {"processor": platform.processor(), "python": platform.python_version()}
    path = RESULTS / f"speed_{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"[speed] wrote {path}", flush=True)


def report(args) -> None:
    throughput_rows = json.loads((RESULTS / "speed_throughput.json").read_text())["rows"]
    curves = {
        path.stem.removeprefix("speed_quality_"): json.loads(path.read_text())["points"]
        for path in sorted(RESULTS.glob("speed_quality_*.json"))
    }
    lines = _throughput_table(throughput_rows)
    title = "Quality per minute (Kang CTRL -> STIM, kNN macro F1; tune_*: other options):"
    lines += ["", title, ""]
    lines += ["| run | " + " | ".join(f"{m} min" for m in MARKS_MINUTES) + " |"]
    lines += ["|---|" + "---|" * len(MARKS_MINUTES)]
    for label, points in curves.items():
        by_minute = {p["minutes"]: p["macro_f1"] for p in points}
        cells = [f"{by_minute[m]:.3f}" if m in by_minute else "-" for m in MARKS_MINUTES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (RESULTS / "speed.md").write_text("\n".join(lines) + "\n")
    _plot(throughput_rows, curves, RESULTS / "speed.png")
    print("\n".join(lines))


def _throughput_table(rows: list[dict]) -> list[str]:
    scvi = {(r["genes"], r["batch_size"]): r for r in rows if r.get("method") == "scvi"}
    lines = [
        "| model | genes | batch | train cells/s | x scVI | inference cells/s (128 / 1,024) "
        "| x scVI (1,024) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['genes']} | - | failed: {row['error']} |")
            continue
        base = scvi.get((row["genes"], SCVI_DEFAULT_BATCH))
        same = scvi.get((row["genes"], 1024))
        train_ratio = row["train_cells_per_s"] / base["train_cells_per_s"] if base else None
        infer_ratio = (
            row["infer_1024_cells_per_s"] / same["infer_1024_cells_per_s"] if same else None
        )
        lines.append(
            f"| {row['method']} | {row['genes']:,} | {row['batch_size']:,} | "
            f"{row['train_cells_per_s']:,.0f} | {train_ratio:.2f} | "
            f"{row['infer_128_cells_per_s']:,.0f} / {row['infer_1024_cells_per_s']:,.0f} | "
            f"{infer_ratio:.2f} | {row['peak_rss_mb']:,.0f} |"
        )
    return lines


def _plot(rows: list[dict], curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    all_genes = [r for r in rows if "error" not in r and r["genes"] > 2000]
    names = [f"{r['method']}\nbatch {r['batch_size']}" for r in all_genes]
    left.barh(names, [r["train_cells_per_s"] for r in all_genes], color="#4c72b0")
    left.set_xlabel("training cells/s (all genes, 2 cores)")
    left.invert_yaxis()
    for label, points in curves.items():
        right.plot(
            [p["minutes"] for p in points], [p["macro_f1"] for p in points], "o-", label=label
        )
    right.set_xlabel("minutes of pretraining")
    right.set_ylabel("kNN macro F1, CTRL -> STIM")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=("throughput", "inference", "quality", "report", "_measure")
    )
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="after")
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=MARKS_MINUTES, help="quality: score marks"
    )
    parser.add_argument(
        "--train-kwargs", default="{}", help="quality: JSON options of SSLEncoder.train"
    )
    parser.add_argument(
        "--model-kwargs", default="{}", help="JSON options of SSLEncoder (pretexts only)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="inference: timed repeats")
    parser.add_argument("--seed", type=int, default=0, help="quality: seed of the model")
    parser.add_argument(
        "--methods", nargs="+", default=("scvi", *PRETEXTS), help="throughput: models to time"
    )
    parser.add_argument(
        "--suffix", default="", help="throughput: results go to speed_throughput<suffix>.json"
    )
    args = parser.parse_args(argv)
    if args.command == "_measure":
        import torch

        torch.set_num_threads(args.threads)
        method, genes, batch_size = args.rest
        model_kwargs = json.loads(args.model_kwargs) if method != "scvi" else None
        result = measure(
            method, genes, int(batch_size) or None, args.steps, args.warmup, model_kwargs
        )
        print(json.dumps(result))
        return
    commands = {"throughput": throughput, "inference": inference, "quality": quality}
    {**commands, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
