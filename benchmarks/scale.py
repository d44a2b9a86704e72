"""Scale: training and inference from disk, memory, and cost as the number of cells grows.

The Kang counts (13,999 cells x 14,053 genes) are tiled into backed ``.h5ad`` files of
``--sizes`` cells (written under ``--workdir``, never in the repository). Every measurement runs
in its own process, so its peak RSS (``ru_maxrss``) is its own:

- ``train_disk`` / ``train_memory``: SSLEncoder (study architecture, random mask) trained for
  ``--train-steps`` minibatches of ``--batch-size`` cells from the backed file (block shuffling)
  or from the matrix loaded in memory; cells/s after ``--warmup-steps`` steps.
- ``infer_disk`` / ``infer_memory``: ``get_latent_representation`` of every cell (minibatches of
  ``--inference-batch-size``); ``scvi_infer_disk`` / ``scvi_infer_memory``: scVI's
  ``get_latent_representation`` (default scVI architecture) on the same cells, same batch size.
- ``first_layer``: one training step of the encoder and of the whole model with the sparse first
  layer (CSR input) and with a dense ``nn.Linear`` first layer (dense input), 14,053 genes.

Timings need a quiet machine: the full run, as used for the reported numbers::

    python benchmarks/scale.py --sizes 100000 300000 1000000 --main-size 300000 \
        --train-steps 300 --threads 2 --workdir /tmp/scssl_scale

A quick check of the script (seconds to minutes)::

    python benchmarks/scale.py --sizes 20000 40000 --main-size 40000 --train-steps 30 \
        --tag smoke

Writes ``benchmarks/results/scale{_tag}.json``, ``.md`` and ``.png``. Needs about 5.7 GB of disk
per million cells (``df -h`` the workdir first); ``--keep-data`` keeps the files for a re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import StepTimer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent / ".." / "shared" / "data" / "kang_ifnb_pbmc.h5ad"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------- data
def tiled_h5ad(source: Path, n_cells: int, workdir: Path) -> Path:
    """A backed .h5ad of ``n_cells`` cells: the source's cells repeated, written tile by tile.

    The CSR arrays are written as anndata writes an uncompressed sparse matrix (contiguous
    HDF5 datasets, ``encoding-type: csr_matrix``), with their final sizes known up front, so
    no more than one tile is in memory. (Growing datasets with ``append`` would give tiny HDF5
    chunks, whose index alone costs gigabytes to read.)
    """
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    path = workdir / f"kang_tiled_{n_cells}.h5ad"
    if path.exists():
        with h5py.File(path, "r") as f:
            if f["X"].attrs.get("shape", [0])[0] == n_cells and "obs" in f:
                return path
    src = ad.read_h5ad(source)
    matrix = src.X.tocsr()
    matrix.sort_indices()
    n_src = src.n_obs
    row_nnz = np.diff(matrix.indptr)[np.arange(n_cells) % n_src]
    indptr = np.concatenate([[0], np.cumsum(row_nnz, dtype=np.int64)])
    tmp = path.with_suffix(".partial")
    with h5py.File(tmp, "w") as f:
        group = f.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([n_cells, src.n_vars])
        data = group.create_dataset("data", shape=(indptr[-1],), dtype=matrix.data.dtype)
        indices = group.create_dataset("indices", shape=(indptr[-1],), dtype=np.int32)
        group.create_dataset("indptr", data=indptr)
        for first in range(0, n_cells, n_src):
            k = min(n_src, n_cells - first)
            start, nnz = indptr[first], matrix.indptr[k]
            data[start : start + nnz] = matrix.data[:nnz]
            indices[start : start + nnz] = matrix.indices[:nnz].astype(np.int32)
        reps = np.arange(n_cells) // n_src
        obs = pd.DataFrame(
            {"stim": pd.Categorical(np.resize(src.obs["stim"].to_numpy(), n_cells))},
            index=[
                f"{name}-{r}"
                for name, r in zip(np.resize(src.obs_names, n_cells), reps, strict=True)
            ],
        )
        write_elem(f, "obs", obs)
        write_elem(f, "var", src.var)
        write_elem(f, "uns", {})
    tmp.rename(path)
    return path


# ------------------------------------------------------------ measurements
def _open(path: str, where: str):
    import anndata as ad

    return ad.read_h5ad(path, backed="r") if where == "disk" else ad.read_h5ad(path)


def measure_train(path: str, where: str, steps: int, warmup: int, batch_size: int) -> dict:
    import scvi

    import scssl

    scvi.settings.seed = 0
    adata = _open(path, where)
    rss_loaded = _peak_rss_mb()
    scssl.model.SSLEncoder.setup_anndata(adata)
    model = scssl.model.SSLEncoder(adata)
    timer = StepTimer(warmup)
    t0 = time.perf_counter()
    model.train(
        max_epochs=1,
        max_steps=steps,
        batch_size=batch_size,
        train_size=1.0,
        early_stopping=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        callbacks=[timer],
    )
    total = time.perf_counter() - t0
    seconds = timer.end - timer.start
    return {
        "cells_per_s": timer.steps * batch_size / seconds,
        "steps_timed": timer.steps,
        "seconds_timed": seconds,
        "seconds_total": total,
        "rss_after_loading_mb": rss_loaded,
        "block_size": getattr(model.trainer.train_dataloader.sampler, "block_size", 1),
    }


def measure_infer(path: str, where: str, method: str, batch_size: int) -> dict:
    import scvi
    import torch

    import scssl

    scvi.settings.seed = 0
    adata = _open(path, where)
    rss_loaded = _peak_rss_mb()
    if method == "scssl":
        scssl.model.SSLEncoder.setup_anndata(adata)
        model = scssl.model.SSLEncoder(adata)
    else:
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata)
    # An untrained model computes exactly as fast as a trained one.
    model.is_trained_ = True
    model.module.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        z = model.get_latent_representation(batch_size=batch_size)
        seconds = time.perf_counter() - t0
    return {
        "cells_per_s": adata.n_obs / seconds,
        "seconds": seconds,
        "n_latent": int(z.shape[1]),
        "finite": bool(np.isfinite(z).all()),
        "rss_after_loading_mb": rss_loaded,
    }


def measure_first_layer(source: str, batch_size: int, repeats: int) -> dict:
    import anndata as ad
    import torch

    from scssl.data import to_torch
    from scssl.data._normalize import normalize_log1p
    from scssl.module import SSLModule
    from scssl.nn import mlp

    adata = ad.read_h5ad(source)
    rng = np.random.default_rng(0)
    batches = [
        to_torch(adata.X[np.sort(rng.choice(adata.n_obs, batch_size, replace=False))])
        for _ in range(repeats + 3)
    ]
    n_genes = adata.n_vars
    out: dict = {"n_genes": n_genes, "batch_size": batch_size}

    steps = {}
    for sparse in (True, False):
        key = "sparse" if sparse else "dense"
        torch.manual_seed(0)
        encoder = mlp(n_genes, (512, 512, 256, 256), 64, sparse_input=sparse)
        normalized = [normalize_log1p(x) for x in batches]
        module = SSLModule(n_genes)
        if not sparse:
            module.encoder = mlp(n_genes, (512, 512, 256, 256), 64, sparse_input=False)
        module.train()

        def encoder_step(i, encoder=encoder, inputs=normalized, sparse=sparse):
            x = inputs[i] if sparse else inputs[i].to_dense()
            encoder.zero_grad()
            encoder(x).pow(2).mean().backward()

        def model_step(i, module=module, sparse=sparse):
            x = batches[i] if sparse else batches[i].to_dense()
            module.zero_grad()
            _, _, losses = module({"X": x, "batch": torch.zeros(x.shape[0], 1)})
            losses.loss.backward()

        steps[f"encoder_step_ms_{key}"] = encoder_step
        steps[f"model_step_ms_{key}"] = model_step
    # Interleave sparse and dense steps so that a change in machine load hits both alike;
    # medians after 3 warm-up steps.
    times: dict = {name: [] for name in steps}
    for i in range(repeats + 3):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(i)
            times[name].append(time.perf_counter() - t0)
    for name, values in times.items():
        out[name] = 1000 * float(np.median(values[3:]))
    out["encoder_speedup_sparse_over_dense"] = (
        out["encoder_step_ms_dense"] / out["encoder_step_ms_sparse"]
    )
    out["model_speedup_sparse_over_dense"] = (
        out["model_step_ms_dense"] / out["model_step_ms_sparse"]
    )
    out["mean_nonzero_genes_per_cell"] = float(adata.X.getnnz(axis=1).mean())
    return out


def _measure(args) -> dict:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    kind = args.kind
    t0 = time.perf_counter()
    if kind in ("train_disk", "train_memory"):
        result = measure_train(
            args.path, kind.split("_")[1], args.train_steps, args.warmup_steps, args.batch_size
        )
    elif kind.endswith(("infer_disk", "infer_memory")):
        method = "scvi" if kind.startswith("scvi") else "scssl"
        result = measure_infer(args.path, kind.rsplit("_", 1)[1], method, args.inference_batch_size)
    elif kind == "first_layer":
        result = measure_first_layer(args.path, args.batch_size, args.repeats)
    else:
        raise ValueError(kind)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["wall_s"] = time.perf_counter() - t0
    return result


def run_child(kind: str, path: Path, args) -> dict:
    """One measurement in a fresh process (its own peak RSS)."""
    cmd = [
        sys.executable,
        __file__,
        "--_measure",
        kind,
        "--_path",
        str(path),
        "--train-steps",
        str(args.train_steps),
        "--warmup-steps",
        str(args.warmup_steps),
        "--batch-size",
        str(args.batch_size),
        "--inference-batch-size",
        str(args.inference_batch_size),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    print(f"[scale] {kind} on {path.name} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shown = {k: round(v, 1) for k, v in result.items() if isinstance(v, float)}
    print(f"[scale]   {shown}", flush=True)
    return result


# ------------------------------------------------------------------ report
def _ratio(a, b):
    try:
        return a / b
    except (TypeError, ZeroDivisionError):
        return None


def summarise(results: dict) -> dict:
    main = results["main"]
    get = lambda kind, key="cells_per_s": main.get(kind, {}).get(key)  # noqa: E731
    first = results.get("first_layer", {})
    return {
        "train_disk_over_memory": _ratio(get("train_disk"), get("train_memory")),
        "infer_disk_over_scvi_disk": _ratio(get("infer_disk"), get("scvi_infer_disk")),
        "infer_memory_over_scvi_memory": _ratio(get("infer_memory"), get("scvi_infer_memory")),
        "infer_disk_peak_rss_mb": get("infer_disk", "peak_rss_mb"),
        "model_speedup_sparse_over_dense": first.get("model_speedup_sparse_over_dense"),
        "encoder_speedup_sparse_over_dense": first.get("encoder_speedup_sparse_over_dense"),
        "targets": {
            "embed_backed_peak_rss_under_4gb": (get("infer_disk", "peak_rss_mb") or 1e9) < 4096,
            "train_disk_within_2x_of_memory": (_ratio(get("train_disk"), get("train_memory")) or 0)
            >= 0.5,
            "inference_at_least_scvi": (_ratio(get("infer_disk"), get("scvi_infer_disk")) or 0)
            >= 1.0,
            "sparse_first_layer_faster": (first.get("model_speedup_sparse_over_dense") or 0) > 1,
        },
    }


def _fmt(value, digits=0):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}"


def write_markdown(results: dict, path: Path) -> None:
    s = results["summary"]
    main, n_main = results["main"], results["config"]["main_size"]
    lines = [
        f"# Scale benchmark ({results['config']['tag'] or 'full'})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, torch threads "
        f"{results['machine']['torch_threads']}, {results['machine']['platform']}. "
        f"Kang counts tiled to the given number of cells, 14,053 genes, backed .h5ad. "
        f"Training: study architecture, batch {results['config']['batch_size']}, "
        f"{results['config']['train_steps']} steps ({results['config']['warmup_steps']} warm-up "
        "not timed). Inference: all cells, minibatches of "
        f"{results['config']['inference_batch_size']}. Each row is its own process.",
        "",
        f"## At {n_main:,} cells",
        "",
        "| measurement | cells/s | peak RSS MB |",
        "|---|---|---|",
    ]
    names = {
        "train_disk": "scssl training, from disk (backed, block shuffle)",
        "train_memory": "scssl training, in memory",
        "infer_disk": "scssl inference, from disk",
        "infer_memory": "scssl inference, in memory",
        "scvi_infer_disk": "scVI get_latent_representation, from disk",
        "scvi_infer_memory": "scVI get_latent_representation, in memory",
    }
    for kind, label in names.items():
        r = main.get(kind, {})
        lines.append(f"| {label} | {_fmt(r.get('cells_per_s'))} | {_fmt(r.get('peak_rss_mb'))} |")
    first = results.get("first_layer", {})
    lines += [
        "",
        f"## Sparse vs dense first layer ({first.get('n_genes', '-')} genes, batch "
        f"{first.get('batch_size', '-')}, {_fmt(first.get('mean_nonzero_genes_per_cell'))} "
        "non-zero genes per cell)",
        "",
        "| one training step | sparse ms | dense ms | dense / sparse |",
        "|---|---|---|---|",
        f"| encoder | {_fmt(first.get('encoder_step_ms_sparse'), 1)} | "
        f"{_fmt(first.get('encoder_step_ms_dense'), 1)} | "
        f"{_fmt(first.get('encoder_speedup_sparse_over_dense'), 2)} |",
        f"| whole model (encoder + decoder + loss) | {_fmt(first.get('model_step_ms_sparse'), 1)}"
        f" | {_fmt(first.get('model_step_ms_dense'), 1)} | "
        f"{_fmt(first.get('model_speedup_sparse_over_dense'), 2)} |",
        "",
        "## Cost as cells grow (from disk)",
        "",
        "| cells | file GB | train cells/s | train peak RSS MB | inference cells/s | "
        "inference peak RSS MB | scVI inference cells/s | scVI peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in sorted(results["growth"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {int(n):,} | {_fmt(r.get('file_gb'), 2)} | "
            f"{_fmt(r.get('train_disk', {}).get('cells_per_s'))} | "
            f"{_fmt(r.get('train_disk', {}).get('peak_rss_mb'))} | "
            f"{_fmt(r.get('infer_disk', {}).get('cells_per_s'))} | "
            f"{_fmt(r.get('infer_disk', {}).get('peak_rss_mb'))} | "
            f"{_fmt(r.get('scvi_infer_disk', {}).get('cells_per_s'))} | "
            f"{_fmt(r.get('scvi_infer_disk', {}).get('peak_rss_mb'))} |"
        )
    t = s["targets"]
    lines += [
        "",
        "## Targets",
        "",
        f"- Embedding {n_main:,} cells from a backed file, peak RSS under 4 GB: "
        f"{_fmt(t['embed_backed_peak_rss_under_4gb'])} ({_fmt(s['infer_disk_peak_rss_mb'])} MB)",
        f"- Training from disk within 2x of in-memory: {_fmt(t['train_disk_within_2x_of_memory'])}"
        f" (disk / memory = {_fmt(s['train_disk_over_memory'], 2)})",
        f"- Inference at least scVI's: {_fmt(t['inference_at_least_scvi'])} (from disk "
        f"{_fmt(s['infer_disk_over_scvi_disk'], 2)}x, in memory "
        f"{_fmt(s['infer_memory_over_scvi_memory'], 2)}x)",
        f"- Sparse first layer faster than dense: {_fmt(t['sparse_first_layer_faster'])} "
        f"({_fmt(s['model_speedup_sparse_over_dense'], 2)}x per training step)",
        "",
        f"Command: `{results['config']['command']}`",
    ]
    if results["config"].get("contended"):
        lines += [
            "",
            "**Timings taken on a shared, contended machine: throughput numbers are not "
            "reliable; peak RSS is.**",
        ]
    path.write_text("\n".join(lines) + "\n")


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    growth = sorted(results["growth"].items(), key=lambda kv: int(kv[0]))
    sizes = [int(n) for n, _ in growth]
    series = {
        "scssl training (disk)": "train_disk",
        "scssl inference (disk)": "infer_disk",
        "scVI inference (disk)": "scvi_infer_disk",
    }
    for label, kind in series.items():
        for ax, key in ((axes[0], "cells_per_s"), (axes[1], "peak_rss_mb")):
            values = [r.get(kind, {}).get(key, np.nan) for _, r in growth]
            ax.plot(sizes, values, "o-", label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="cells", ylabel="cells / s", title="Throughput")
    axes[1].set(xscale="log", xlabel="cells", ylabel="peak RSS (MB)", title="Peak memory")
    axes[1].axhline(4096, color="grey", ls="--", lw=1)
    axes[0].legend(fontsize=8)
    main = results["main"]
    kinds = [
        "train_disk",
        "train_memory",
        "infer_disk",
        "infer_memory",
        "scvi_infer_disk",
        "scvi_infer_memory",
    ]
    values = [main.get(k, {}).get("cells_per_s", 0) or 0 for k in kinds]
    colors = ["C0", "C0", "C1", "C1", "C2", "C2"]
    bars = axes[2].bar(range(len(kinds)), values, color=colors)
    for bar, kind in zip(bars, kinds, strict=True):
        if kind.endswith("memory"):
            bar.set_alpha(0.5)
    axes[2].set_xticks(range(len(kinds)), [k.replace("_", "\n") for k in kinds], fontsize=7)
    title = f"{results['config']['main_size']:,} cells: disk vs memory"
    axes[2].set(ylabel="cells / s", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------- main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Kang .h5ad to tile")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--main-size", type=int, default=300_000, help="size for disk vs memory")
    p.add_argument("--workdir", default="/tmp/scssl_scale", help="where the big files go")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--inference-batch-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=20, help="steps timed for sparse vs dense")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--skip-memory", action="store_true", help="skip the in-memory runs")
    p.add_argument("--skip-scvi", action="store_true")
    p.add_argument("--keep-data", action="store_true", help="keep the tiled files")
    p.add_argument("--contended", action="store_true", help="mark timings as unreliable")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--_measure", dest="kind", help=argparse.SUPPRESS)
    p.add_argument("--_path", dest="path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.kind:
        print(json.dumps(_measure(args)))
        return
    if args.warmup_steps >= args.train_steps:
        p.error("--warmup-steps must be smaller than --train-steps")
    if args.main_size not in args.sizes:
        args.sizes = sorted({*args.sizes, args.main_size})
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    need_gb = 5.8 * sum(args.sizes) / 1e6
    free_gb = shutil.disk_usage(workdir).free / 1e9
    if need_gb > 0.8 * free_gb:
        p.error(f"the tiled files need ~{need_gb:.1f} GB; {workdir} has {free_gb:.1f} GB free")

    import torch

    results: dict = {
        "config": {
            **{k: v for k, v in vars(args).items() if k not in ("kind", "path")},
            "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads or torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "growth": {},
        "main": {},
    }
    results["first_layer"] = run_child("first_layer", Path(args.data), args)
    written = []
    for n in args.sizes:
        t0 = time.perf_counter()
        path = tiled_h5ad(Path(args.data), n, workdir)
        written.append(path)
        row = {"file_gb": path.stat().st_size / 1e9, "write_s": time.perf_counter() - t0}
        print(f"[scale] {path} ({row['file_gb']:.2f} GB)", flush=True)
        kinds = ["train_disk", "infer_disk"] + ([] if args.skip_scvi else ["scvi_infer_disk"])
        for kind in kinds:
            row[kind] = run_child(kind, path, args)
        results["growth"][str(n)] = row
        if n == args.main_size:
            results["main"] = {k: row[k] for k in kinds}
            if not args.skip_memory:
                memory_kinds = ["train_memory", "infer_memory"]
                memory_kinds += [] if args.skip_scvi else ["scvi_infer_memory"]
                for kind in memory_kinds:
                    results["main"][kind] = run_child(kind, path, args)
    results["summary"] = summarise(results)
    if not args.keep_data:
        for path in written:
            path.unlink(missing_ok=True)

    RESULTS.mkdir(exist_ok=True)
    stem = "scale" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, RESULTS / f"{stem}.md")
    write_plot(results, RESULTS / f"{stem}.png")
    print((RESULTS / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
