"""Does scaling each gene's input to unit variance help the SSL embedding? (an exploration)

The scanpy PCA pipeline scales every gene to unit variance (``sc.pp.scale``), so rare cell
types' marker genes weigh as much as abundant genes; scssl's encoder sees ``log1p`` values,
where they weigh little. This script emulates the scaling without changing scssl: it gives the
SSLEncoder log-normalised values divided by each gene's standard deviation over all cells
(capped at 10, as ``sc.pp.scale(max_value=10)``; no centring, batch centering does that) as
``log_normalized`` input, against the same values unscaled. Per seed and fold: kNN macro F1
(Euclidean and cosine), the linear probe and, with ``--finetune``, the fine-tuned classifier.

    python benchmarks/input_scaling.py pbmc3tech --seeds 0 1 2 --finetune

Appends JSON lines to ``benchmarks/results/input_scaling.jsonl`` (``class_balance`` and
``validation_min_cells``: the classifier's options; rows without them used the square-root
weights and 2, the defaults then).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
SHARED = ROOT / ".." / "shared" / "data"


def inputs(data, scaled: bool):
    """``data`` with log-normalised values in ``.X``, each gene divided by its sd if ``scaled``."""
    import anndata as ad
    import scipy.sparse as sp

    counts = data.X.toarray() if sp.issparse(data.X) else np.asarray(data.X)
    library = np.maximum(counts.sum(1, keepdims=True), 1.0)
    values = np.log1p(counts / library * 1e4)
    if scaled:
        values = np.minimum(values / (values.std(0) + 1e-3), 10.0)
    matrix = sp.csr_matrix(values.astype(np.float32))
    return ad.AnnData(X=matrix, obs=data.obs.copy(), var=data.var[[]].copy())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["kang", "pbmc3tech"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--modes", nargs="+", default=["scaled", "plain"])
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/input_scaling.jsonl"))
    args = parser.parse_args(argv)
    import scvi

    sys.path.insert(0, str(Path(__file__).parent))
    import label_transfer
    import label_transfer_tasks

    from scssl.benchmark import knn_transfer, macro_f1, per_class_f1
    from scssl.data import highly_variable_genes
    from scssl.model import SSLEncoder

    adata, labels, batch_key, folds = label_transfer_tasks.exploration_task(
        args.task, Path(args.data_dir)
    )
    genes = highly_variable_genes(adata, 2000, batch_key=batch_key)

    def score(truth, predicted, key, row):
        row[key] = macro_f1(truth, predicted)
        row[f"{key}_per_class_f1"] = per_class_f1(truth, predicted)

    with open(args.out, "a") as out:
        for mode in args.modes:
            for seed in args.seeds:
                scvi.settings.seed = seed
                data = inputs(adata[:, genes], scaled=mode == "scaled")
                SSLEncoder.setup_anndata(data, batch_key=batch_key, log_normalized=True)
                encoder = SSLEncoder(data)
                encoder.train(max_time="00:00:10:00", enable_progress_bar=False)
                latent = encoder.get_latent_representation()
                for fold, ref in folds:
                    row = {"task": args.task, "mode": mode, "seed": seed, "fold": fold}
                    truth = labels[~ref]
                    for metric in ("euclidean", "cosine"):
                        predicted, _ = knn_transfer(
                            latent[ref], labels[ref], latent[~ref], metric=metric
                        )
                        score(truth, predicted, f"knn_{metric}", row)
                    probe, query_features = label_transfer.linear_probe(latent, labels, ref, seed)
                    score(truth, probe.predict(query_features), "linear_probe", row)
                    if args.finetune:
                        clf = label_transfer.finetuned_classifier(encoder, data, labels, ref, seed)
                        predicted = np.asarray(clf.predict(indices=np.flatnonzero(~ref)))
                        score(truth, predicted, "finetuned", row)
                        row.update(label_transfer.recorded_options())
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print({k: round(v, 3) for k, v in row.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
