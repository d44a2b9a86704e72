"""Self-training with the calibrated confidence after the default fine-tuning (an exploration).

Per seed an SSLEncoder is pretrained as ``benchmarks/label_transfer.py`` does; per fold the
default classifier (``SSLClassifier.from_encoder(...).train()``, reference labelled, query
unlabelled) labels the query; the query cells whose calibrated confidence is at least ``--tau``
take its label, and a second classifier from the same pretrained encoder is fine-tuned on the
reference plus those pseudo-labelled cells. Both are scored on the whole query by macro F1.

    python benchmarks/self_training.py pbmc3tech --seeds 0 1 2
    python benchmarks/self_training.py kang --seeds 0

Appends JSON lines to ``benchmarks/results/self_training.jsonl``: per fold the default's and
the self-trained classifier's macro F1, the share of query cells pseudo-labelled and how many
of those labels were right, and the seconds of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
SHARED = ROOT / ".." / "shared" / "data"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["kang", "pbmc3tech"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tau", type=float, default=0.9, help="confidence to pseudo-label")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/self_training.jsonl"))
    args = parser.parse_args(argv)
    import scvi

    sys.path.insert(0, str(Path(__file__).parent))
    import label_transfer
    import label_transfer_tasks

    from scssl.benchmark import macro_f1

    adata, labels, batch_key, folds = label_transfer_tasks.exploration_task(
        args.task, Path(args.data_dir)
    )
    with open(args.out, "a") as out:
        for seed in args.seeds:
            scvi.settings.seed = seed
            data, encoder, _ = label_transfer.pretrained_encoder(adata, batch_key)
            for fold, ref in folds:
                query = np.flatnonzero(~ref)
                t0 = time.perf_counter()
                clf = label_transfer.finetuned_classifier(encoder, data, labels, ref, seed)
                proba = clf.predict(indices=query, soft=True)
                predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
                confident = proba.to_numpy().max(1) >= args.tau
                row = {
                    "task": args.task,
                    "seed": seed,
                    "fold": fold,
                    "tau": args.tau,
                    **label_transfer.recorded_options(),
                    "default": macro_f1(labels[~ref], predicted),
                    "seconds_default": time.perf_counter() - t0,
                    "share_pseudo_labelled": float(confident.mean()),
                    "pseudo_label_accuracy": float(
                        (predicted[confident] == labels[query][confident]).mean()
                    ),
                }
                pseudo_labels, labelled = labels.copy(), ref.copy()
                pseudo_labels[query[confident]] = predicted[confident]
                labelled[query[confident]] = True
                t0 = time.perf_counter()
                second = label_transfer.finetuned_classifier(
                    encoder, data, pseudo_labels, labelled, seed
                )
                second_predicted = np.asarray(second.predict(indices=query))
                row["self_trained"] = macro_f1(labels[~ref], second_predicted)
                row["seconds_self_trained"] = time.perf_counter() - t0
                out.write(json.dumps(row) + "\n")
                out.flush()
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
