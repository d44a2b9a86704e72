"""Label transfer with the workflow's encoder pretrained without batch centering.

The label-transfer benchmark's scssl group (``benchmarks/label_transfer.py``: an SSLEncoder on
the task's 2,000 batch-aware HVGs, all cells, no labels, 10 minutes at most; then kNN, the
linear probe and the fine-tuned classifier per fold) with one change: ``batch_centering=False``
(the batch stays registered, so fine-tuning keeps its batch adversary). Compare with that
benchmark's rows of the same task and seed, which pretrain with batch centering::

    python benchmarks/batch_centering.py pbmc3tech --seeds 0 1 2
    python benchmarks/batch_centering.py kang2pbmc3tech --seeds 0 1
    python benchmarks/batch_centering.py kang --seeds 0 1 --genes 500

Appends one JSON line per fold to ``benchmarks/results/batch_centering.jsonl``: macro F1 of
``ssl_knn`` (Euclidean), ``ssl_knn_cosine``, ``ssl_linear_probe`` and ``ssl_finetuned``, the
share of query cells on which the classifier and Euclidean kNN agree, the classifier's
per-class F1, seconds and the classifier's options (rows without ``pretext_weight`` used 1,
the default until 2026-11-27; rows without ``finetuned_share`` were
measured before the weight interpolation: 1; rows with ``"min_drawn_share": 0`` were fine-tuned
before an epoch drew at least a third of all cells, which changed the epochs of
``pbmc3tech2kang`` alone). ``--genes N``: every step on the task's N
batch-aware most variable genes, as the benchmark's ``--genes``.
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


def fold_row(task, seed, fold, encoder, data, latent, labels, ref) -> dict:
    """kNN (both distances), linear probe and fine-tuned classifier of one fold."""
    import label_transfer

    from scssl.benchmark import knn_transfer, macro_f1, per_class_f1

    truth = labels[~ref]
    row = {"task": task, "seed": seed, "fold": fold, "batch_centering": False}
    knn, _ = knn_transfer(latent[ref], labels[ref], latent[~ref])
    cosine, _ = knn_transfer(latent[ref], labels[ref], latent[~ref], metric="cosine")
    row["ssl_knn"], row["ssl_knn_cosine"] = macro_f1(truth, knn), macro_f1(truth, cosine)
    probe, query_features = label_transfer.linear_probe(latent, labels, ref, seed)
    row["ssl_linear_probe"] = macro_f1(truth, probe.predict(query_features))
    t0 = time.perf_counter()
    classifier = label_transfer.finetuned_classifier(encoder, data, labels, ref, seed)
    finetuned = classifier.predict(indices=np.flatnonzero(~ref))
    row["finetune_seconds"] = time.perf_counter() - t0
    row["ssl_finetuned"] = macro_f1(truth, finetuned)
    row["knn_agreement"] = float(np.mean(finetuned == knn))
    row["finetuned_per_class_f1"] = per_class_f1(truth, finetuned)
    row.update(label_transfer.recorded_options())
    return row


def main(argv=None) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import label_transfer
    import label_transfer_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=list(label_transfer.TITLES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--genes", type=int, default=None, help="as label_transfer.py --genes")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/batch_centering.jsonl"))
    args = parser.parse_args(argv)
    import scvi

    adata, labels, batch_key, folds = label_transfer_tasks.exploration_task(
        args.task, Path(args.data_dir), args.genes
    )
    for seed in args.seeds:
        scvi.settings.seed = seed
        data, encoder, seconds = label_transfer.pretrained_encoder(
            adata, batch_key, batch_centering=False
        )
        epochs = len(encoder.history["train_loss"])
        latent = encoder.get_latent_representation()
        for fold, ref in folds:
            row = fold_row(args.task, seed, fold, encoder, data, latent, labels, ref)
            row.update(pretrain_seconds=seconds, pretrain_epochs=epochs)
            if args.genes is not None:
                row["genes"] = args.genes
            print(json.dumps({k: v for k, v in row.items() if k != "finetuned_per_class_f1"}))
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
