"""How sure are the label-transfer comparisons? A paired bootstrap over the query cells.

The label-transfer benchmark scores each method on one set of query cells; on pbmc_3tech a
fold's rarest types have one to three of them. This script resamples the query cells of each
fold with replacement, stratified by cell type, and scores every method and seed on the same
resamples (:func:`scssl.benchmark.bootstrap_macro_f1`); a resample's score of a method is its
mean over folds and seeds, as in the benchmark's tables. The intervals cover which query cells
were scored, not the spread between trainings (every seed is scored on the same resamples).
For ``--method`` (the fine-tuned classifier) against every other method it reports the observed
ratio of macro F1, its 95% interval, the difference with its interval, and the share of
resamples in which the ratio reaches 1 and 1.02 (the bar of the benchmark; with types of a few
cells the resampled ratios are skewed, so a share describes the resamples and is not the chance
of clearing the bar); per fold, the difference and its interval.

Predictions come from the benchmark's cache (``benchmarks/label_transfer.py --run GROUP TASK
--seed S``, with the same settings), which the results JSON does not keep; the script keeps them
in ``label_transfer_{task}[_panel{genes}]_predictions.json.gz`` beside its results, and
``--saved`` reads them from there instead (no cache needed). A method is compared when it is
cached for every fold of all of ``--seeds``; the others are listed as left out::

    python benchmarks/label_transfer_ci.py --task pbmc3tech --seeds 0 1 2
    python benchmarks/label_transfer_ci.py --task kang --seeds 0 1 --scvi-epochs 100 \\
        --scanvi-epochs 20

Writes ``benchmarks/results/label_transfer_{task}[_panel{genes}]_ci[_{method}].{json,md}`` (the
method named when it is not the fine-tuned classifier).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import label_transfer
import label_transfer_tasks


def _stem(args) -> str:
    """``label_transfer_{task}[_panel{genes}]``: the start of this task's result files."""
    return f"label_transfer_{args.task}" + (f"_panel{args.genes}" if args.genes is not None else "")


def saved_predictions_path(args) -> Path:
    """Where the predictions read from the cache are kept with the results."""
    return Path(args.results) / f"{_stem(args)}_predictions.json.gz"


def cached_rows(args) -> list[dict]:
    """The rows of ``args.seeds`` (with ``seed`` and ``_predicted``): the cached ones, which
    replace those of the same seed and method in :func:`saved_predictions_path`, and the saved
    rows of the methods not cached (a rerun of one group keeps the others); with ``--saved``,
    the saved rows alone."""
    saved = saved_predictions_path(args)
    kept = json.loads(gzip.decompress(saved.read_bytes())) if saved.exists() else []
    if args.saved:
        return [row for row in kept if row["seed"] in args.seeds]
    rows = []
    for seed in args.seeds:
        settings = SimpleNamespace(**{**vars(args), "seed": seed, "max_cells": None})
        for group in label_transfer.METHOD_GROUPS:
            path = label_transfer._cache_path(group, args.task, settings)
            if path.exists():
                rows += [{**row, "seed": seed} for row in json.loads(path.read_text())]
    if rows:  # cached rows replace the kept rows of their seed and method; the others stay
        fresh = {(row["seed"], row["method"]) for row in rows}
        kept = [row for row in kept if (row["seed"], row["method"]) not in fresh] + rows
        saved.write_bytes(gzip.compress(json.dumps(kept).encode(), mtime=0))
    return [row for row in kept if row["seed"] in args.seeds]


def cached_predictions(args) -> tuple[dict, list[dict]]:
    """``{(method, seed): {fold: predicted labels of the fold's query}}``, and the rows
    without their predictions."""
    predictions, rows = {}, []
    for row in cached_rows(args):
        by_fold = predictions.setdefault((row["method"], row["seed"]), {})
        by_fold[row["fold"]] = np.asarray(row.pop("_predicted"))
        rows.append(row)
    return predictions, rows


def bootstrap(args) -> dict:
    """Resampled mean macro F1 of every method present for all seeds, and the observed one."""
    from scssl.benchmark import bootstrap_macro_f1, macro_f1

    adata, labels_key, _, folds = label_transfer_tasks.load_task(
        args.task, Path(args.data_dir), None, 0
    )
    labels = adata.obs[labels_key].astype(str).to_numpy()
    predictions, rows = cached_predictions(args)
    methods = sorted({method for method, _ in predictions})
    names = {fold for fold, _ in folds}
    complete = [
        m for m in methods if all(names <= set(predictions.get((m, s), {})) for s in args.seeds)
    ]
    if args.method not in complete:
        source = saved_predictions_path(args) if args.saved else args.cache
        raise SystemExit(
            f"No predictions of {args.method} for seeds {args.seeds} in {source}: run "
            "benchmarks/label_transfer.py --run GROUP TASK --seed S with these settings"
            + (", then this script without --saved." if args.saved else ", or use --saved.")
        )
    observed, per_fold = {}, {}
    for index, (fold, ref) in enumerate(folds):
        truth = labels[~ref]
        named = {f"{m}|{s}": predictions[m, s][fold] for m in complete for s in args.seeds}
        scores = bootstrap_macro_f1(truth, named, args.resamples, seed=index)
        for method in complete:
            columns = [f"{method}|{s}" for s in args.seeds]
            fold_scores = scores[columns].mean(axis=1).to_numpy()
            per_fold.setdefault(method, {})[fold] = fold_scores
            fold_observed = np.mean([macro_f1(truth, named[c]) for c in columns])
            observed.setdefault(method, {})[fold] = fold_observed
    return {
        "resampled": {m: np.mean(list(v.values()), axis=0) for m, v in per_fold.items()},
        "per_fold": per_fold,
        "observed": {m: float(np.mean(list(v.values()))) for m, v in observed.items()},
        "observed_per_fold": observed,
        "left_out": [m for m in methods if m not in complete],
        "rows": rows,
    }


def comparisons(result: dict, method: str) -> list[dict]:
    """``method`` against each other method: ratio, difference, intervals, shares."""
    mine, rows = result["resampled"][method], []
    for other, theirs in result["resampled"].items():
        if other == method:
            continue
        ratio, difference = mine / theirs, mine - theirs
        row = {
            "against": other,
            "observed": result["observed"][other],
            "ratio": result["observed"][method] / result["observed"][other],
            "ratio_95": np.percentile(ratio, [2.5, 97.5]).tolist(),
            "difference": result["observed"][method] - result["observed"][other],
            "difference_95": np.percentile(difference, [2.5, 97.5]).tolist(),
            "share_ratio_at_least_1": float(np.mean(ratio >= 1)),
            "share_ratio_at_least_1.02": float(np.mean(ratio >= 1.02)),
            "per_fold": {},
        }
        for fold, scores in result["per_fold"][other].items():
            fold_difference = result["per_fold"][method][fold] - scores
            row["per_fold"][fold] = {
                "difference": result["observed_per_fold"][method][fold]
                - result["observed_per_fold"][other][fold],
                "difference_95": np.percentile(fold_difference, [2.5, 97.5]).tolist(),
            }
        rows.append(row)
    return sorted(rows, key=lambda r: -r["observed"])


def markdown(rows: list[dict], result: dict, args) -> str:
    mine = result["observed"][args.method]

    def name(method: str) -> str:
        return label_transfer.method_name(method, result["rows"])

    genes = f", {args.genes} genes" if args.genes is not None else ""
    lines = [
        f"# How sure is the comparison? {label_transfer.TITLES[args.task]}{genes}",
        "",
        f"{name(args.method)}: macro F1 {mine:.3f} (mean over "
        f"folds and seeds {args.seeds}). Paired bootstrap over each fold's query cells, "
        f"{args.resamples} resamples; intervals are the 2.5th and 97.5th percentiles.",
        "",
        "| against | its macro F1 | ratio (95%) | difference (95%) | share ratio >= 1 | "
        "share ratio >= 1.02 | difference per fold (95%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        folds = "; ".join(
            f"{fold} {v['difference']:+.3f} ({v['difference_95'][0]:+.3f}, "
            f"{v['difference_95'][1]:+.3f})"
            for fold, v in r["per_fold"].items()
        )
        lines.append(
            f"| {name(r['against'])} | {r['observed']:.3f} | "
            f"{r['ratio']:.3f} ({r['ratio_95'][0]:.3f}, {r['ratio_95'][1]:.3f}) | "
            f"{r['difference']:+.3f} ({r['difference_95'][0]:+.3f}, "
            f"{r['difference_95'][1]:+.3f}) | {r['share_ratio_at_least_1']:.2f} | "
            f"{r['share_ratio_at_least_1.02']:.2f} | {folds} |"
        )
    if result["left_out"]:
        missing = ", ".join(result["left_out"])
        lines += ["", f"Not cached for every seed and fold, left out: {missing}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(label_transfer.TITLES), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--method", default="ssl_finetuned")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--data-dir", default=str(label_transfer.SHARED))
    parser.add_argument("--cache", default="/tmp/scssl_label_transfer_cache")
    parser.add_argument("--pretrain-time", default="00:00:10:00")
    parser.add_argument("--scvi-epochs", type=int, default=None)
    parser.add_argument("--scanvi-epochs", type=int, default=None)
    parser.add_argument("--genes", type=int, default=None)
    parser.add_argument("--results", default=str(label_transfer.RESULTS))
    parser.add_argument(
        "--saved",
        action="store_true",
        help="read the predictions kept in --results instead of the cache",
    )
    parser.add_argument("--out", default=None, help="default: see above")
    args = parser.parse_args(argv)
    result = bootstrap(args)
    rows = comparisons(result, args.method)
    name = _stem(args) + "_ci" + (f"_{args.method}" if args.method != "ssl_finetuned" else "")
    out = Path(args.out or Path(args.results) / name)
    payload = {"args": vars(args), "observed": result["observed"], "comparisons": rows}
    payload["left_out"] = result["left_out"]
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    text = markdown(rows, result, args)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
