"""Does self-supervised pretraining help cell-type classification with few labels?

The study's central claim on pbmc_3tech (1,200 PBMCs of three 10x chemistries), leave one
chemistry out: reference = two chemistries, query = the third. For each held-out chemistry an
SSLEncoder is pretrained without labels on all of its cells (reference + query, with
:func:`scssl.model.pretrain_encoder`: all 1,767 genes, batch = chemistry, batch centering;
``train_classifier`` turns the centering off; the study's uniform reconstruction loss, as the
classifier's pretraining keeps it, not zero-shot kNN's per-gene weights) for
``--pretrain-epochs`` epochs. Then, for each seed and share of labelled reference cells (10%,
30%, 100%; a stratified sample, at least one cell per type; the other reference cells stay in
as unlabelled cells), three classifiers are scored on the query by
macro F1:

- ``pretrained``: ``SSLClassifier.from_encoder(encoder, cells).train()`` with its defaults
  (the label-transfer recipe);
- ``scratch``: the same classifier, on the same cells with the same batch centering, with every
  layer re-initialised before the same training (without the weight interpolation of
  ``finetuned_share``, which would pull it back towards random weights): what the labels alone
  achieve;
- ``logreg``: logistic regression on the labelled cells' log-normalised HVGs (C chosen on a
  stratified 20%).

The seed draws the labelled cells and seeds fine-tuning; the pretrained encoder of a
chemistry is shared by the seeds. Means and standard deviations are over seeds x chemistries.

    python benchmarks/pretraining_helps.py [--pretrain-epochs 400] [--seeds 0 1 2]
    # or one process per held-out chemistry, then the outputs merged:
    python benchmarks/pretraining_helps.py --held-out 5p --out /tmp/helps_5p   # ... each
    python benchmarks/pretraining_helps.py --merge /tmp/helps_*.json

Writes ``benchmarks/results/pretraining_helps.{json,md,png}``. Runs on a GPU when there is one
(Lightning's ``accelerator="auto"``). Each row records the device, the pretraining precision
and the classifier's options. Single scores move by up to ~0.1 between a CPU (bf16 pretraining)
and a GPU (float32), about as much as between seeds; logistic regression does not depend on
the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT / ".." / "shared" / "data"
FRACTIONS = (0.1, 0.3, 1.0)
#: The scratch classifier keeps its fine-tuned weights: no pretrained start to move back towards.
SCRATCH_TRAIN = {"finetuned_share": 1.0}
NAMES = {
    "pretrained": "SSL pretrained (reference + query, no labels), fine-tuned",
    "scratch": "same classifier from scratch",
    "logreg": "logistic regression (HVGs)",
}


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of a stratified ``fraction`` of the cells (at least one per class)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        n = max(1, round(fraction * len(where)))
        keep[rng.choice(where, n, replace=False)] = True
    return keep


def _reinitialise(module) -> None:
    """Fresh weights for every layer (data statistics such as batch means are kept)."""
    for layer in module.modules():
        if layer is not module and hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


def _classifier_rows(encoder, keep: np.ndarray, truth: np.ndarray, base: dict) -> list:
    """Pretrained and scratch classifiers on the encoder's cells, labels where ``keep``."""
    import warnings

    import scvi

    from scssl.benchmark import macro_f1
    from scssl.model import TRANSFER_LABELS_KEY, SSLClassifier, query_positions

    cells = encoder.adata.copy()
    labels = cells.obs[TRANSFER_LABELS_KEY].astype(str).to_numpy()
    reference = np.flatnonzero(~cells.obs_names.str.endswith("-query"))
    labels[reference[~keep]] = "Unknown"
    cells.obs[TRANSFER_LABELS_KEY] = labels
    rows = []
    for method in ("pretrained", "scratch"):
        t0 = time.perf_counter()
        scvi.settings.seed = base["seed"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = SSLClassifier.from_encoder(encoder, cells, TRANSFER_LABELS_KEY)
            share = {}
            if method == "scratch":
                _reinitialise(clf.module)
                share = SCRATCH_TRAIN
            clf.train(seed=base["seed"], enable_progress_bar=False, **share)
        predicted = clf.predict(indices=query_positions(clf))
        row = {**base, "method": method, "macro_f1": macro_f1(truth, predicted)}
        rows.append({**row, "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _fold_rows(pbmc, held_out: str, args) -> list[dict]:
    """Every method, fraction and seed for one held-out chemistry."""
    import scssl
    from scssl.benchmark import logistic_regression_transfer, macro_f1

    ref_mask = (pbmc.obs["batch"] != held_out).to_numpy()
    reference, query = pbmc[ref_mask].copy(), pbmc[~ref_mask].copy()
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    truth = query.obs["cell_type"].astype(str).to_numpy()
    t0 = time.perf_counter()
    encoder = scssl.model.pretrain_encoder(
        reference,
        query,
        "cell_type",
        batch_key="batch",
        pretrain_time=None,
        pretrain_epochs=args.pretrain_epochs,
        seed=0,
        encoder_kwargs={"reconstruction_gene_weights": "uniform"},
    )
    pretrain_seconds = time.perf_counter() - t0
    print(f"[helps] pretrained for ->{held_out} in {pretrain_seconds:.0f} s", flush=True)
    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            keep = labelled_subset(labels, fraction, seed)
            base = {"held_out": held_out, "fraction": fraction, "seed": seed}
            base["n_labelled"] = int(keep.sum())
            rows += _classifier_rows(encoder, keep, truth, base)
            t0 = time.perf_counter()
            predicted = logistic_regression_transfer(
                reference[keep], labels[keep], query, seed=seed
            )
            row = {**base, "method": "logreg", "macro_f1": macro_f1(truth, predicted)}
            rows.append({**row, "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["pretrain_seconds"] = pretrain_seconds
    return rows


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--pretrain-epochs", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads of torch and of numpy's BLAS"
    )
    parser.add_argument("--held-out", nargs="+", help="chemistries to hold out (default: all)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="write the outputs of earlier partial runs"
    )
    parser.add_argument("--out", default=str(RESULTS / "pretraining_helps"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse_args(argv)
    if args.merge:
        parts = [json.loads(Path(path).read_text()) for path in args.merge]
        rows = [row for part in parts for row in part["rows"]]
        write_outputs(rows, args, parts[0]["device"])
        return
    import anndata as ad
    import scvi
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    scvi.settings.dl_num_workers = 0
    pbmc = ad.read_h5ad(Path(args.data_dir) / "pbmc_3tech.h5ad")
    pbmc.obs["batch"] = pbmc.obs["batch"].astype(str)
    sys.path.insert(0, str(Path(__file__).parent))
    from label_transfer import recorded_options

    from scssl.train import default_precision

    on_gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if on_gpu else f"CPU, {args.threads} threads"
    precision = default_precision("cuda" if on_gpu else "cpu")
    rows = []
    # numpy's BLAS would take every core: with one process per chemistry on a 16-core GPU
    # machine each logistic regression took 78-150 s (under 2 s on 2 cores alone).
    with threadpool_limits(limits=args.threads):
        for held_out in args.held_out or sorted(pbmc.obs["batch"].unique()):
            rows += _fold_rows(pbmc, held_out, args)
    for row in rows:
        row.update(device=device, pretrain_precision=precision)
        if row["method"] != "logreg":  # the classifiers' options; logistic regression has none
            train = SCRATCH_TRAIN if row["method"] == "scratch" else None
            row.update(recorded_options(None, train))
    write_outputs(rows, args, f"{device}, pretraining precision {precision}")


def _summary(rows: list[dict]) -> dict:
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for fraction in FRACTIONS:
            scores = [
                r["macro_f1"] for r in rows if r["method"] == method and r["fraction"] == fraction
            ]
            summary.setdefault(method, {})[str(fraction)] = {
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "n": len(scores),
            }
    return summary


def _gain_lines(rows: list[dict]) -> list[str]:
    """Pretrained minus scratch per held-out chemistry (mean over seeds) and overall."""
    held = sorted({r["held_out"] for r in rows})
    lines = ["| labels | " + " | ".join(f"->{h}" for h in held) + " | mean (sd over pairs) |"]
    lines.append("|---" * (len(held) + 2) + "|")
    for fraction in FRACTIONS:
        pairs = {}
        for r in rows:
            if r["fraction"] == fraction and r["method"] in ("pretrained", "scratch"):
                key = (r["held_out"], r["seed"])
                pairs.setdefault(key, {})[r["method"]] = r["macro_f1"]
        gains = {k: v["pretrained"] - v["scratch"] for k, v in pairs.items() if len(v) == 2}
        per_fold = [np.mean([g for (h, _), g in gains.items() if h == fold]) for fold in held]
        values = list(gains.values())
        cells = [f"{g:+.3f}" for g in per_fold]
        overall = f"{np.mean(values):+.3f} ({np.std(values):.3f})"
        lines.append(f"| {int(fraction * 100)}% | " + " | ".join(cells) + f" | {overall} |")
    return lines


def write_outputs(rows: list[dict], args, device: str) -> None:
    """JSON, markdown table and line plot of the rows."""
    summary = _summary(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"args": vars(args), "device": device, "summary": summary, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    pretrain = sorted(
        {(r["held_out"], round(r["pretrain_seconds"], 1)) for r in rows if "pretrain_seconds" in r}
    )
    lines = [
        "# Does pretraining help? (pbmc_3tech, leave one chemistry out)",
        "",
        f"SSLEncoder pretrained {args.pretrain_epochs} epochs without labels on each fold's "
        "reference + query cells (seconds per fold: "
        + ", ".join(f"->{h} {s}" for h, s in pretrain)
        + "); classifiers fine-tuned with SSLClassifier.train()'s defaults; macro F1 on the "
        f"held-out chemistry, mean (sd) over 3 chemistries x seeds {args.seeds}; run on {device}.",
        "",
        "| method | " + " | ".join(f"{int(f * 100)}% labels" for f in FRACTIONS) + " |",
        "|---" * (len(FRACTIONS) + 1) + "|",
    ]
    for method, by_fraction in summary.items():
        cells = [
            f"{by_fraction[str(f)]['mean']:.3f} ({by_fraction[str(f)]['std']:.3f})"
            for f in FRACTIONS
        ]
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Pretrained minus scratch (macro F1):", "", *_gain_lines(rows)]
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    _plot(summary, out.with_suffix(".png"))


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, by_fraction in summary.items():
        means = [by_fraction[str(f)]["mean"] for f in FRACTIONS]
        stds = [by_fraction[str(f)]["std"] for f in FRACTIONS]
        x = [f * 100 for f in FRACTIONS]
        ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=NAMES[method])
    ax.set_xscale("log")
    ax.set_xticks([10, 30, 100], ["10%", "30%", "100%"])
    ax.set_xlabel("labelled reference cells")
    ax.set_ylabel("macro F1 (held-out chemistry)")
    ax.set_title("pbmc_3tech, leave one chemistry out")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


if __name__ == "__main__":
    main()
