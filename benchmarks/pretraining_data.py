"""Does pretraining on more unlabelled data help? A dataset alone against three united.

The study pretrained on ~20 million cells; a user has their own dataset and a few public ones
measured on other gene panels. For each target task, scssl's default SSLEncoder (random
masking, batch centering) is pretrained on

- ``alone``: the target's cells, as ``benchmarks/label_transfer.py`` does (scvi-tools' 400
  epochs; the 10-minute bound is not reached);
- ``union``: the target's cells plus those of the other two datasets, united by
  :func:`scssl.data.concat_datasets` on the target's genes, for as many optimiser steps as
  ``alone`` took (equal compute);
- ``union_default``: the union with the encoder's defaults (10-minute bound);
- ``union_unmasked`` (on request): ``union`` with ``mask_unmeasured_genes=False``, the
  zero-filled genes taken for measured zeros.

Targets and genes (as in the label-transfer benchmark): Kang CTRL -> STIM on Kang's 2,000 most
variable genes (batch-aware), and pbmc_3tech leave one chemistry out on its 1,767 genes. The
other datasets (Kang 13,999 cells x 14,053 genes; PBMC 5k CITE-seq RNA, 5,000 cells x 3,000
random genes; pbmc_3tech, 1,200 cells x 1,767 genes) measure only some of those genes, and
their unmeasured genes stay out of the reconstruction loss (``varm["measured_genes"]``).
Batches: Kang's condition, pbmc_3tech's chemistry, PBMC 5k one batch. Each encoder is scored on
the target's folds by 5-NN, a linear probe and ``SSLClassifier.from_encoder(...).train()``
(defaults) on all the cells it was pretrained on (``--finetune-on target``: on the target's
cells only), the target's reference cells labelled.

    python benchmarks/pretraining_data.py [--targets kang pbmc3tech] [--seed 0]

Appends one JSON line per configuration to ``benchmarks/results/pretraining_data.jsonl`` (with
the classifier's ``class_balance`` and ``validation_min_cells``; lines without them used the
square-root class weights) and rewrites ``pretraining_data.md`` from all lines.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT / ".." / "shared" / "data"
LABELS = "_reference_labels"
#: Target task -> the dataset whose cells are scored.
TARGETS = {"kang": "kang", "pbmc3tech": "pbmc_3tech"}


def load_datasets(data_dir: Path, target: str):
    """The target dataset on its genes, and the other two on the target's genes they have.

    Genes: Kang's 2,000 most variable (batch-aware) or all 1,767 of pbmc_3tech, as in
    ``benchmarks/label_transfer.py``. Batches in ``obs["batch"]``.
    """
    import anndata as ad
    import mudata as md

    import scssl
    from scssl.data import highly_variable_genes

    kang = scssl.datasets.kang_ifnb_pbmc(data_dir / "kang_ifnb_pbmc.h5ad")
    kang.obs["batch"] = kang.obs["stim"].astype(str)
    pbmc3 = ad.read_h5ad(data_dir / "pbmc_3tech.h5ad")
    pbmc3.obs["batch"] = pbmc3.obs["batch"].astype(str)
    datasets = {
        "kang": kang,
        "pbmc5k": md.read_h5ad(str(data_dir / "pbmc5k_citeseq.h5mu"), "rna"),
        "pbmc_3tech": pbmc3,
    }
    name = TARGETS[target]
    genes = datasets[name].var_names
    if target == "kang":
        genes = genes[highly_variable_genes(kang, 2000, batch_key="batch")]
    return {
        key: data[:, data.var_names.isin(genes)].copy()
        for key, data in sorted(datasets.items(), key=lambda item: item[0] != name)
    }


def folds(target_cells, target: str) -> list[tuple[str, np.ndarray]]:
    """``(name, reference mask)``: CTRL -> STIM on Kang, each chemistry held out on pbmc_3tech."""
    if target == "kang":
        return [("CTRL->STIM", (target_cells.obs["stim"] == "CTRL").to_numpy())]
    batches = target_cells.obs["batch"].astype(str)
    return [(f"->{b.split(':')[-1]}", (batches != b).to_numpy()) for b in sorted(batches.unique())]


def pretrain(datasets: dict, max_steps: int | None, seed: int, mask: bool = True):
    import scvi

    import scssl

    union = scssl.data.concat_datasets(datasets, batch_key="batch")
    scvi.settings.seed = seed
    scssl.model.SSLEncoder.setup_anndata(union, batch_key="batch")
    encoder = scssl.model.SSLEncoder(union, mask_unmeasured_genes=mask)
    bounds = {"max_time": "00:00:10:00"}
    if max_steps is not None:
        bounds = {"max_steps": max_steps, "max_epochs": 100_000, "early_stopping": False}
    t0 = time.perf_counter()
    encoder.train(enable_progress_bar=False, **bounds)
    seconds = time.perf_counter() - t0
    return encoder, union, seconds, int(encoder.trainer.global_step)


def score(encoder, union, target: str, seed: int, finetune_on: str = "all") -> dict:
    """5-NN, linear probe and fine-tuned classifier on each fold of the target's cells."""
    import label_transfer  # beside this script, on sys.path when it runs
    import scvi

    from scssl.benchmark import knn_transfer, macro_f1
    from scssl.model import SSLClassifier

    target_cells = np.flatnonzero((union.obs["dataset"] == TARGETS[target]).to_numpy())
    cells = union[target_cells]
    labels = cells.obs["cell_type"].astype(str).to_numpy()
    latent = encoder.get_latent_representation(indices=target_cells)
    scores: dict[str, dict] = {"knn": {}, "linear_probe": {}, "finetuned": {}}
    t0 = time.perf_counter()
    for fold, ref in folds(cells, target):
        truth = labels[~ref]
        knn, _ = knn_transfer(latent[ref], labels[ref], latent[~ref], 5)
        scores["knn"][fold] = macro_f1(truth, knn)
        probe, query_features = label_transfer.linear_probe(latent, labels, ref, seed)
        scores["linear_probe"][fold] = macro_f1(truth, probe.predict(query_features))
        # semi-supervised: the target's reference labelled, among every pretraining cell or
        # among the target's cells only
        scvi.settings.seed = seed
        if finetune_on == "all":
            tuned, query = union.copy(), target_cells[~ref]
            tuned.obs[LABELS] = "Unknown"
            tuned.obs.loc[tuned.obs_names[target_cells[ref]], LABELS] = labels[ref]
        else:
            tuned, query = cells.copy(), np.flatnonzero(~ref)
            tuned.obs[LABELS] = np.where(ref, labels, "Unknown")
        clf = SSLClassifier.from_encoder(encoder, tuned, LABELS)
        clf.train(seed=seed, enable_progress_bar=False)
        predicted = np.asarray(clf.predict(indices=query))
        scores["finetuned"][fold] = macro_f1(truth, predicted)
    row = {name: float(np.mean(list(values.values()))) for name, values in scores.items()}
    row.update(label_transfer.recorded_options())
    return {**row, "folds": scores, "finetune_seconds": time.perf_counter() - t0}


def run(
    target: str, config: str, datasets: dict, steps: int | None, seed: int, finetune_on: str
) -> dict:
    if config == "alone":
        datasets = {TARGETS[target]: datasets[TARGETS[target]]}
    max_steps = None if config in ("alone", "union_default") else steps
    encoder, union, seconds, done = pretrain(
        datasets, max_steps, seed, mask=config != "union_unmasked"
    )
    row = {
        "target": target,
        "config": config,
        "seed": seed,
        "datasets": {name: int(d.n_obs) for name, d in datasets.items()},
        "n_genes": int(union.n_vars),
        "measured_genes": {b: int(v) for b, v in union.varm["measured_genes"].sum().items()},
        "pretrain_seconds": seconds,
        "pretrain_steps": done,
        "pretrain_epochs": len(encoder.history["train_loss"]),
        "finetune_on": finetune_on,
    }
    return {**row, **score(encoder, union, target, seed, finetune_on)}


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Pretraining on more unlabelled data (`benchmarks/pretraining_data.py`)",
        "",
        "Macro F1 on the target's folds (Kang CTRL -> STIM; pbmc_3tech leave one chemistry out,"
        " mean of 3) by the data the encoder was pretrained on: the target alone, or united "
        "with the other datasets (equal steps, or the 10-minute default). 2 CPU cores. Class "
        "weights `inverse`: the inverse class frequency with `validation_min_cells=10` (the "
        "current defaults); `sqrt`: its square root, types of two or more labelled cells "
        "holding some out for validation (the former defaults).",
        "",
        "| target | config | seed | cells | steps | epochs | pretraining s | kNN | "
        "linear probe | fine-tuned | fine-tuned on | class weights | fine-tuned per fold |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_fold = ", ".join(f"{k} {v:.3f}" for k, v in r["folds"]["finetuned"].items())
        lines.append(
            f"| {r['target']} | {r['config']} | {r['seed']} | {sum(r['datasets'].values()):,} | "
            f"{r['pretrain_steps']} | {r['pretrain_epochs']} | {r['pretrain_seconds']:.0f} | "
            f"{r['knn']:.3f} | {r['linear_probe']:.3f} | {r['finetuned']:.3f} | "
            f"{r.get('finetune_on', 'all')} cells | {r.get('class_balance', 'sqrt')} | "
            f"{per_fold} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--configs", nargs="+", default=["alone", "union", "union_default"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, help="steps of 'union' (default: those 'alone' took in this run)"
    )
    parser.add_argument(
        "--finetune-on",
        choices=["all", "target"],
        default="all",
        help="fine-tune on every pretraining cell, or on the target's cells only",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "pretraining_data"))
    args = parser.parse_args(argv)
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.dl_num_workers = 0
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    for target in args.targets:
        datasets = load_datasets(Path(args.data_dir), target)
        steps = args.steps
        for config in args.configs:
            row = run(target, config, datasets, steps, args.seed, args.finetune_on)
            if config == "alone" and steps is None:
                steps = row["pretrain_steps"]
            print(json.dumps(row), flush=True)
            with out.with_suffix(".jsonl").open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    out.with_suffix(".md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
