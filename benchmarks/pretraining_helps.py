"""Does self-supervised pretraining help cell-type classification with few labels?

The study's central claim in miniature. An SSLEncoder (random mask) is pretrained without labels
on an auxiliary dataset (all 13,999 Kang PBMCs, 14,053 genes), then fine-tuned as an
SSLClassifier on pbmc_3tech (another study, another gene panel: 1,767 genes of which 1,335 are
in the Kang vocabulary; the vocabulary alignment zero-fills the rest) with 10%, 30% and 100% of
the reference labels (stratified sample; the other reference cells are kept as unlabeled), and
scored leave-one-chemistry-out (reference = two chemistries, query = the third) by macro F1.

Compared with
- the same classifier (same architecture, same aligned input) trained from scratch;
- logistic regression on the labelled cells' log-normalised expression (2,000 HVGs).
- with ``--shared-genes``: also an encoder pretrained on Kang restricted to the genes the two
  datasets share, so the fine-tuning input has no zero-filled genes.

    python benchmarks/pretraining_helps.py [--pretrain-epochs 15] [--seeds 0 1]

Writes ``benchmarks/results/pretraining_helps.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT / ".." / "shared" / "data"
FRACTIONS = (0.1, 0.3, 1.0)
UNLABELED = "Unknown"
NAMES = {
    "pretrained": "SSL pretrained on Kang, fine-tuned",
    "pretrained_shared_genes": "SSL pretrained on Kang (shared genes), fine-tuned",
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


def pretrain(kang, epochs: int, seed: int, path: Path):
    import scvi

    import scssl

    if (path / "model.pt").exists():
        return scssl.model.SSLEncoder.load(str(path), adata=kang), None
    scvi.settings.seed = seed
    scssl.model.SSLEncoder.setup_anndata(kang)
    encoder = scssl.model.SSLEncoder(kang)
    t0 = time.perf_counter()
    encoder.train(max_epochs=epochs, enable_progress_bar=False)
    seconds = time.perf_counter() - t0
    encoder.save(str(path), overwrite=True)
    return encoder, seconds


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--shared-genes", action="store_true")
    parser.add_argument("--cache", default="/tmp/scssl_pretraining_helps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-kang-cells", type=int, default=None, help="smoke tests")
    parser.add_argument("--out", default=str(RESULTS / "pretraining_helps"))
    parser.add_argument(
        "--rows-from", help="write the outputs from the JSON rows printed in a (partial) run's log"
    )
    return parser.parse_args()


def _rows_from_log(args) -> None:
    import re

    text = Path(args.rows_from).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    match = re.search(r"Kang vocabulary: (\d+) of (\d+) model genes", text)
    info = {"partial_run_from_log": True}
    if match:
        info["alignment"] = {"n_matched": int(match[1]), "n_vocabulary": int(match[2])}
    write_outputs(rows, args, info)


def _encoders(kang, pbmc, args) -> tuple[dict, dict]:
    """The encoders pretrained on Kang (all genes; with --shared-genes also the shared genes)."""
    cache = Path(args.cache)
    encoders, info = {}, {}
    encoder, seconds = pretrain(kang.copy(), args.pretrain_epochs, 0, cache / "kang_full")
    encoders["pretrained"] = encoder
    info["pretrained"] = {"seconds": seconds, "n_genes": kang.n_vars}
    alignment = encoder.align(pbmc, min_overlap=0.05)[1]
    info["alignment"] = alignment.as_dict()
    print(f"alignment of pbmc_3tech to the Kang vocabulary: {alignment}", flush=True)
    if args.shared_genes:
        upper = {g.upper() for g in pbmc.var_names}
        shared = [g for g in kang.var_names if g.upper() in upper]
        encoder, seconds = pretrain(
            kang[:, shared].copy(), args.pretrain_epochs, 0, cache / "kang_shared_genes"
        )
        encoders["pretrained_shared_genes"] = encoder
        info["pretrained_shared_genes"] = {"seconds": seconds, "n_genes": len(shared)}
    return encoders, info


def _classifier(model, reference, encoders: dict):
    """An SSLClassifier from a pretrained encoder, or (``model=None``) the same from scratch."""
    import scssl

    if model is not None:
        return scssl.model.SSLClassifier.from_encoder(
            model, reference, "label_subset", min_overlap=0.05
        )
    init = encoders["pretrained"].init_params_
    arch = {**init.get("non_kwargs", {}), **init.get("kwargs", {})}
    aligned, _ = encoders["pretrained"].align(reference, min_overlap=0.05)
    scssl.model.SSLClassifier.setup_anndata(aligned, "label_subset")
    return scssl.model.SSLClassifier(
        aligned,
        n_latent=arch["n_latent"],
        n_hidden=arch["n_hidden"],
        activation=arch["activation"],
        dropout_rate=arch["dropout_rate"],
    )


def _setting_rows(pbmc, labels, ref_mask, keep, base, encoders, args) -> list[dict]:
    """Every method's row for one held-out chemistry, label fraction and seed."""
    import scvi

    from scssl.benchmark import logistic_regression_transfer, macro_f1

    seed = base["seed"]
    query = pbmc[~ref_mask].copy()
    reference = pbmc[ref_mask].copy()
    reference.obs["label_subset"] = np.where(keep, labels[ref_mask], UNLABELED)
    rows = []
    for name, model in [*encoders.items(), ("scratch", None)]:
        t0 = time.perf_counter()
        scvi.settings.seed = seed
        clf = _classifier(model, reference, encoders)
        clf.train(
            max_epochs=args.finetune_epochs,
            enable_progress_bar=False,
            calibrate=False,
            train_size=0.85,
            validation_size=0.15,
        )
        predicted = clf.predict(query, min_overlap=0.05)
        rows.append(
            {
                **base,
                "method": name,
                "macro_f1": macro_f1(labels[~ref_mask], predicted),
                "epochs": len(clf.history["train_loss"]),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    t0 = time.perf_counter()
    predicted = logistic_regression_transfer(
        pbmc[np.flatnonzero(ref_mask)[keep]], labels[ref_mask][keep], query, seed=seed
    )
    rows.append(
        {
            **base,
            "method": "logreg",
            "macro_f1": macro_f1(labels[~ref_mask], predicted),
            "seconds": time.perf_counter() - t0,
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    args = _parse_args()
    if args.rows_from:
        _rows_from_log(args)
        return

    import anndata as ad
    import scvi
    import torch

    import scssl

    torch.set_num_threads(args.threads)
    scvi.settings.dl_num_workers = 0
    data_dir = Path(args.data_dir)
    kang = scssl.datasets.kang_ifnb_pbmc(data_dir / "kang_ifnb_pbmc.h5ad")
    if args.max_kang_cells:
        kang = kang[: args.max_kang_cells].copy()
    pbmc = ad.read_h5ad(data_dir / "pbmc_3tech.h5ad")
    pbmc.obs["batch"] = pbmc.obs["batch"].astype(str)
    labels = pbmc.obs["cell_type"].astype(str).to_numpy()
    encoders, pretrain_info = _encoders(kang, pbmc, args)

    rows = []
    for held_out in sorted(pbmc.obs["batch"].unique()):
        ref_mask = (pbmc.obs["batch"] != held_out).to_numpy()
        for fraction in FRACTIONS:
            for seed in args.seeds:
                keep = labelled_subset(labels[ref_mask], fraction, seed)
                base = {
                    "held_out": held_out,
                    "fraction": fraction,
                    "seed": seed,
                    "n_labelled": int(keep.sum()),
                }
                rows += _setting_rows(pbmc, labels, ref_mask, keep, base, encoders, args)
    write_outputs(rows, args, pretrain_info)


def write_outputs(rows: list[dict], args, pretrain_info: dict) -> None:
    """JSON, markdown table and line plot of the rows (also for a partial run)."""
    import matplotlib

    alignment_info = pretrain_info.get("alignment", {})
    summary = {}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:
        for fraction in FRACTIONS:
            sel = [
                r["macro_f1"] for r in rows if r["method"] == method and r["fraction"] == fraction
            ]
            summary.setdefault(method, {})[str(fraction)] = {
                "mean": float(np.mean(sel)),
                "std": float(np.std(sel)),
                "n": len(sel),
            }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"args": vars(args), "pretraining": pretrain_info, "summary": summary, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))

    lines = [
        "# Does pretraining help? (pbmc_3tech, leave one chemistry out)",
        "",
        f"SSLEncoder pretrained {args.pretrain_epochs} epochs on all Kang cells without labels; "
        f"classifiers fine-tuned at most {args.finetune_epochs} epochs (early stopping); "
        f"macro F1 on the held-out chemistry, mean (std) over 3 chemistries x seeds "
        f"{args.seeds}. Gene alignment of pbmc_3tech to the Kang vocabulary: "
        f"{alignment_info.get('n_matched')} of {alignment_info.get('n_vocabulary')} genes.",
        "",
        f"Measured fits: {len(rows)} (held-out chemistries: "
        f"{sorted({r['held_out'] for r in rows})}).",
        "",
        "| method | " + " | ".join(f"{int(f * 100)}% labels" for f in FRACTIONS) + " |",
        "|---" * (len(FRACTIONS) + 1) + "|",
    ]
    for method in methods:
        cells = [
            f"{summary[method][str(f)]['mean']:.3f} ({summary[method][str(f)]['std']:.3f})"
            for f in FRACTIONS
        ]
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Difference pretrained - scratch per held-out chemistry (mean over seeds):", ""]
    held = sorted({r["held_out"] for r in rows})
    lines += ["| fraction | " + " | ".join(held) + " |", "|---" * (len(held) + 1) + "|"]
    for fraction in FRACTIONS:
        diffs = []
        for h in held:

            def mean(m, h=h, fraction=fraction):
                return np.mean(
                    [
                        r["macro_f1"]
                        for r in rows
                        if r["method"] == m and r["held_out"] == h and r["fraction"] == fraction
                    ]
                )

            diffs.append(f"{mean('pretrained') - mean('scratch'):+.3f}")
        lines.append(f"| {int(fraction * 100)}% | " + " | ".join(diffs) + " |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in methods:
        means = [summary[method][str(f)]["mean"] for f in FRACTIONS]
        stds = [summary[method][str(f)]["std"] for f in FRACTIONS]
        ax.errorbar(
            [f * 100 for f in FRACTIONS],
            means,
            yerr=stds,
            marker="o",
            capsize=3,
            label=NAMES[method],
        )
    ax.set_xscale("log")
    ax.set_xticks([10, 30, 100], ["10%", "30%", "100%"])
    ax.set_xlabel("labelled reference cells")
    ax.set_ylabel("macro F1 (held-out chemistry)")
    ax.set_title("pbmc_3tech, leave one chemistry out")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=150)


if __name__ == "__main__":
    main()
