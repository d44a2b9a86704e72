"""Fine-tuning options against the defaults on a label-transfer task (default pbmc_3tech).

For each seed an SSLEncoder is pretrained as ``benchmarks/label_transfer.py`` does (all cells,
no labels, defaults); then, per fold (held-out chemistry, CTRL -> STIM with ``--task kang``,
one study -> the other with ``kang2pbmc3tech`` or ``pbmc3tech2kang``), the linear probe and
``SSLClassifier.from_encoder(...).train()`` with each variant's options are scored on the query
by macro F1. The variants share the encoder, so their differences are the fine-tuning's alone.

    python benchmarks/finetune_variants.py \\
        '{"default": [{}, {}], "sqrt": [{"class_balance": "sqrt"}, {}]}' --seeds 0 1 2

A variant is ``[from_encoder options, train options]``. Appends JSON lines to
``benchmarks/results/finetune_variants.jsonl`` (rows without ``task`` are pbmc_3tech; each row
names the ``class_balance``, ``pretext_weight``, ``validation_min_cells`` and
``finetuned_share`` its classifier used; rows without ``class_balance`` used the square-root
weights, rows without ``validation_min_cells`` 2, rows without ``finetuned_share`` 1 and rows
without ``pretext_weight`` 1 until 2026-11-27 and 3 after (their ``run`` says which) unless
their ``options`` say otherwise, the defaults then; rows with ``"batch_centering": false`` were
pretrained without centering, as the classifier workflow does (``--uncentred``); rows with
``genes`` ran on that many HVGs (``--genes``, as ``label_transfer.py --genes``); a ``run`` names
rows of one exploration (``--run``), some from scripts outside the repository; rows with
``"min_drawn_share": 0`` were fine-tuned before an epoch drew at least a third of all cells)
and prints the means per variant and fold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
SHARED = ROOT / ".." / "shared" / "data"


def main(argv=None) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import label_transfer
    import label_transfer_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON {name: [from_encoder options, train options]}")
    parser.add_argument("--task", choices=list(label_transfer.TITLES), default="pbmc3tech")
    parser.add_argument("--genes", type=int, help="a panel of this many HVGs (as label_transfer)")
    parser.add_argument(
        "--uncentred", action="store_true", help="pretrain without batch centering (the workflow's)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--run", help="a name recorded in each row (rows of one exploration)")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/finetune_variants.jsonl"))
    args = parser.parse_args(argv)
    import scvi

    from scssl.benchmark import macro_f1

    variants = json.loads(args.variants)
    adata, labels, batch_key, folds = label_transfer_tasks.exploration_task(
        args.task, Path(args.data_dir), args.genes
    )
    encoder_kwargs = {"batch_centering": False} if args.uncentred else {}
    settings = {"run": args.run, "genes": args.genes, **encoder_kwargs}  # kept in every row
    settings = {key: value for key, value in settings.items() if value is not None}
    rows = []
    with open(args.out, "a") as out:
        for seed in args.seeds:
            scvi.settings.seed = seed
            data, encoder, _ = label_transfer.pretrained_encoder(adata, batch_key, **encoder_kwargs)
            latent = encoder.get_latent_representation()
            for fold, ref in folds:
                probe, query_features = label_transfer.linear_probe(latent, labels, ref, seed)
                predicted = {"linear_probe": probe.predict(query_features)}
                for name, (classifier_kwargs, train_kwargs) in variants.items():
                    t0 = time.perf_counter()
                    clf = label_transfer.finetuned_classifier(
                        encoder, data, labels, ref, seed, classifier_kwargs, train_kwargs
                    )
                    predicted[name] = np.asarray(clf.predict(indices=np.flatnonzero(~ref)))
                    seconds = time.perf_counter() - t0
                    print(f"{name} {fold} seed {seed}: {seconds:.0f} s", flush=True)
                for name, values in predicted.items():
                    row = {"task": args.task, "seed": seed, "fold": fold, "variant": name}
                    row.update(settings)
                    row["macro_f1"] = macro_f1(labels[~ref], values)
                    if name != "linear_probe":
                        row["options"] = variants[name]
                        row.update(label_transfer.recorded_options(*variants[name]))
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                out.flush()
    means = defaultdict(lambda: defaultdict(list))
    for row in rows:
        means[row["variant"]][row["fold"]].append(row["macro_f1"])
    for name, per_fold in means.items():
        overall = np.mean([v for values in per_fold.values() for v in values])
        folds_text = ", ".join(f"{f} {np.mean(v):.3f}" for f, v in sorted(per_fold.items()))
        print(f"{name}: {overall:.3f} ({folds_text})")


if __name__ == "__main__":
    main()
