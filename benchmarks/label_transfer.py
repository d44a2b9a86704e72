"""Label transfer benchmark: scssl (zero-shot kNN and fine-tuned classifier) against baselines.

Tasks
-----
- ``kang``: Kang et al. PBMCs, reference = control cells (``stim == "CTRL"``), query = IFN-beta
  stimulated cells; ``cell_type``. Batch = ``stim``.
- ``pbmc3tech``: PBMCs of three 10x chemistries, leave one chemistry out (reference = the other
  two); ``cell_type``. Batch = ``batch``. Scores are averaged over the three folds.
- ``kang2pbmc3tech``: another study as the reference: Kang's cells (both conditions) annotate
  pbmc_3tech's, on their shared genes, labels renamed to pbmc_3tech's
  (``label_transfer_tasks.kang_and_pbmc3tech``). Batch = Kang's condition or pbmc_3tech's chemistry.
- ``pbmc3tech2kang``: the other direction, a small reference annotating a large query:
  pbmc_3tech's 1,197 labelled cells annotate Kang's (both conditions; its erythrocytes, a type
  pbmc_3tech lacks, left out), on the same genes and labels.

Methods
-------
scssl with its defaults: an SSLEncoder pretrained without labels on all cells of the task
(reference and query, the 2,000 most variable genes, batch centering on the batch) for
``--pretrain-time`` (10 minutes); then ``ssl_linear_probe`` (logistic regression on the
frozen, standardised embedding, C chosen on a stratified 20% of the reference) and ``ssl_finetuned``
(``SSLClassifier.from_encoder(encoder, reference + unlabelled query).train()``: semi-supervised
fine-tuning, temperature-calibrated); ``scssl.model.train_classifier`` differs in one option,
its pretraining without batch centering (``benchmarks/batch_centering.py`` measures that).
``ssl_knn`` (group ``ssl_zero_shot``): the 5-nearest-neighbour vote from the reference
(Euclidean; ``ssl_knn_cosine`` with the cosine distance) in the embedding of a second encoder,
pretrained alike with ``scssl.model.ZERO_SHOT_ENCODER_KWARGS`` over the defaults (per-gene
weights of the reconstruction error), as ``scssl.model.pretrain_encoder`` does for
``scssl.tl.transfer_labels(method="knn")``.
Baselines users would pick instead: ``pca_knn`` (PCA-50 of 2,000 HVGs, all cells),
``scvi_knn`` (scVI with the batch and its default epochs), both kNN also with the cosine
distance (``*_cosine``), ``scanvi`` (from that scVI model with its defaults, query cells
unlabelled), ``logreg`` (logistic regression on the reference's 2,000 HVGs, C chosen on a
stratified 20% of the reference).
Metrics: macro F1 over the query's cell types, accuracy, per-class F1, expected calibration
error (ECE, 15 bins) of the predicted label's probability (the vote share for kNN).

Each method group runs in its own process (peak RSS is its own). Timings are wall-clock
seconds on the machine that runs it.

    python benchmarks/label_transfer.py [--tasks kang pbmc3tech] [--pretrain-time 00:00:10:00]

``--genes N`` keeps only the N batch-aware most variable genes (chosen on all cells) for every
method: a check of the defaults on fewer genes, an optimistic proxy of a targeted panel.

Writes ``benchmarks/results/label_transfer.{json,md}`` and PNG plots next to them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from label_transfer_tasks import hvg_cells, load_task

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT / ".." / "shared" / "data"
METHOD_GROUPS = ("ssl", "ssl_zero_shot", "pca", "scvi", "logreg")
NAMES = {
    "ssl_finetuned": "scssl fine-tuned classifier",
    "ssl_linear_probe": "scssl linear probe (frozen embedding)",
    "ssl_knn": "scssl SSLEncoder + kNN",
    "ssl_knn_cosine": "scssl SSLEncoder + kNN, cosine",
    "pca_knn": "PCA-50 (2,000 HVGs) + kNN",
    "pca_knn_cosine": "PCA-50 (2,000 HVGs) + kNN, cosine",
    "scvi_knn": "scVI + kNN",
    "scvi_knn_cosine": "scVI + kNN, cosine",
    "scanvi": "scANVI",
    "logreg": "logistic regression (2,000 HVGs, C tuned)",
}
TITLES = {
    "kang": "Kang PBMC, CTRL -> STIM",
    "pbmc3tech": "pbmc_3tech, leave one chemistry out (mean of 3 folds)",
    "kang2pbmc3tech": "Kang (both conditions) -> pbmc_3tech (three chemistries), shared genes",
    "pbmc3tech2kang": "pbmc_3tech (three chemistries) -> Kang (both conditions), shared genes",
}
SSL_ROWS = ("ssl_finetuned", "ssl_linear_probe", "ssl_knn", "ssl_knn_cosine")


def method_name(method: str, rows: list[dict]) -> str:
    """The table's name of a method, with the genes its task had when fewer than 2,000."""
    n_genes = min((r.get("n_genes") or 2000 for r in rows), default=2000)
    name = NAMES[method]
    return name if n_genes >= 2000 else name.replace("2,000 HVGs", f"{n_genes:,} genes")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pretrained_encoder(adata, batch_key: str, max_time: str = "00:00:10:00", **encoder_kwargs):
    """scssl's pretraining in this benchmark: an SSLEncoder with its defaults (or
    ``encoder_kwargs`` over them) on the 2,000 batch-aware HVGs of all cells, trained for at
    most ``max_time`` (scvi-tools' epoch heuristic caps it; the seed is ``scvi.settings.seed``).

    Returns the HVG AnnData, the encoder and the seconds of its training.
    """
    from scssl.model import SSLEncoder

    data = hvg_cells(adata, batch_key)
    SSLEncoder.setup_anndata(data, batch_key=batch_key)
    encoder = SSLEncoder(data, **encoder_kwargs)
    t0 = time.perf_counter()
    encoder.train(max_time=max_time, enable_progress_bar=False)
    return data, encoder, time.perf_counter() - t0


def _scores(y_true, predicted, confidence) -> dict:
    from scssl.benchmark import accuracy, expected_calibration_error, macro_f1, per_class_f1

    out = {
        "macro_f1": macro_f1(y_true, predicted),
        "accuracy": accuracy(y_true, predicted),
        "per_class_f1": per_class_f1(y_true, predicted),
    }
    out["ece"] = (
        None if confidence is None else expected_calibration_error(y_true, predicted, confidence)
    )
    return out


def _row(method, task, fold, y_true, predicted, confidence, seconds, **extra) -> dict:
    row = {"task": task, "fold": fold, "method": method, "seconds": seconds}
    row.update(_scores(y_true, predicted, confidence))
    row.update(extra)
    row["_predicted"] = [str(p) for p in predicted]
    return row


def run_group(group: str, task: str, args) -> list[dict]:
    """The rows of one group of methods on one task (every fold)."""
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    scvi.settings.dl_num_workers = 0
    adata, labels_key, batch_key, folds = load_task(
        task, Path(args.data_dir), args.max_cells, args.seed, args.genes
    )
    run = {
        "pca": _pca_rows,
        "logreg": _logreg_rows,
        "scvi": _scvi_rows,
        "ssl": _ssl_rows,
        "ssl_zero_shot": _ssl_zero_shot_rows,
    }[group]
    rows = run(adata, labels_key, batch_key, folds, task, args)
    for row in rows:
        row["peak_rss_mb"] = _peak_rss_mb()
        row["n_cells"], row["n_genes"] = adata.n_obs, adata.n_vars
    return rows


def _knn_rows(name, embedding, labels, folds, task, seconds, **extra) -> list[dict]:
    """kNN label transfer (``scssl.benchmark.knn_transfer``) from each fold's reference, with
    the Euclidean distance (``name``) and the cosine distance (``name + "_cosine"``)."""
    from scssl.benchmark import knn_transfer

    rows = []
    for metric, suffix in (("euclidean", ""), ("cosine", "_cosine")):
        for fold, ref in folds:
            t0 = time.perf_counter()
            predicted, confidence = knn_transfer(
                embedding[ref], labels[ref], embedding[~ref], metric=metric
            )
            elapsed = seconds + time.perf_counter() - t0
            y_true = labels[~ref]
            row = _row(name + suffix, task, fold, y_true, predicted, confidence, elapsed, **extra)
            rows.append(row)
    return rows


def _soft_row(name, task, fold, y_true, proba, seconds, **extra) -> dict:
    """A row from probabilities (cells x labels): the most probable label and its probability."""
    values = proba.to_numpy()
    predicted = proba.columns.to_numpy()[values.argmax(1)]
    return _row(name, task, fold, y_true, predicted, values.max(1), seconds, **extra)


def _pca_rows(adata, labels_key, batch_key, folds, task, args) -> list[dict]:
    from scssl.benchmark import pca_embedding

    labels = adata.obs[labels_key].astype(str).to_numpy()
    t0 = time.perf_counter()
    embedding = pca_embedding(adata, seed=args.seed)
    return _knn_rows("pca_knn", embedding, labels, folds, task, time.perf_counter() - t0)


def _logreg_rows(adata, labels_key, batch_key, folds, task, args) -> list[dict]:
    from scssl.benchmark import logistic_regression_transfer

    labels = adata.obs[labels_key].astype(str).to_numpy()
    rows = []
    for fold, ref in folds:
        t0 = time.perf_counter()
        proba = logistic_regression_transfer(
            adata[ref], labels[ref], adata[~ref], seed=args.seed, soft=True
        )
        rows.append(_soft_row("logreg", task, fold, labels[~ref], proba, time.perf_counter() - t0))
    return rows


def _scvi_rows(adata, labels_key, batch_key, folds, task, args) -> list[dict]:
    """scVI + kNN, and scANVI from the same scVI model per fold (query labels hidden), on the
    2,000 batch-aware HVGs (``seurat_v3`` on counts), as scvi-tools' tutorials select them."""
    from scssl.benchmark import scanvi_model, scvi_model

    labels = adata.obs[labels_key].astype(str).to_numpy()
    adata = hvg_cells(adata, batch_key)
    t0 = time.perf_counter()
    scvi = scvi_model(
        adata,
        batch_key=batch_key,
        max_epochs=args.scvi_epochs,
        seed=args.seed,
        enable_progress_bar=False,
    )
    scvi_seconds = time.perf_counter() - t0
    epochs = len(scvi.history["elbo_train"])
    latent = scvi.get_latent_representation()
    rows = _knn_rows("scvi_knn", latent, labels, folds, task, scvi_seconds, epochs=epochs)
    for fold, ref in folds:
        t0 = time.perf_counter()
        # As this script always ran scANVI (its scores reproduce): no reseeding (seed=None),
        # the scVI model's AnnData validated again for each fold (adata=...).
        scanvi = scanvi_model(
            scvi,
            np.where(ref, labels, "Unknown"),
            max_epochs=args.scanvi_epochs,
            seed=None,
            adata=scvi.adata,
            enable_progress_bar=False,
        )
        proba = scanvi.predict(scvi.adata[~ref], soft=True)
        seconds = scvi_seconds + time.perf_counter() - t0
        rows.append(_soft_row("scanvi", task, fold, labels[~ref], proba, seconds))
    return rows


def linear_probe(latent: np.ndarray, labels: np.ndarray, ref: np.ndarray, seed: int):
    """The linear probe of a fold: logistic regression (C chosen on a stratified 20% of the
    reference) on the frozen embedding standardised over all cells.

    Returns the fitted probe and the query cells' standardised embedding.
    """
    from scssl.model._finetuning import fit_logistic_regression

    standardised = (latent - latent.mean(0)) / (latent.std(0) + 1e-6)
    probe = fit_logistic_regression(standardised[ref], labels[ref], seed=seed)
    return probe, standardised[~ref]


def recorded_options(classifier_kwargs=None, train_kwargs=None) -> dict:
    """The classifier's options recorded with its rows: its class weights and pretext weight
    (``SSLClassifier``), the rare types' split and the weight interpolation (``train``), as
    given or at their defaults."""
    import inspect

    from scssl.model import SSLClassifier

    init = inspect.signature(SSLClassifier.__init__).parameters
    train = inspect.signature(SSLClassifier.train).parameters
    return {
        **{
            name: (classifier_kwargs or {}).get(name, init[name].default)
            for name in ("class_balance", "pretext_weight")
        },
        **{
            name: (train_kwargs or {}).get(name, train[name].default)
            for name in ("validation_min_cells", "finetuned_share")
        },
    }


def finetuned_classifier(
    encoder, data, labels, ref, seed: int, classifier_kwargs=None, train_kwargs=None
):
    """``SSLClassifier.from_encoder`` on ``data`` with the reference labelled and the query
    unlabelled (semi-supervised), trained with ``train_kwargs`` over its defaults."""
    import scvi

    from scssl.model import SSLClassifier

    scvi.settings.seed = seed
    cells = data.copy()
    cells.obs["_reference_labels"] = np.where(ref, labels, "Unknown")
    clf = SSLClassifier.from_encoder(
        encoder, cells, "_reference_labels", **(classifier_kwargs or {})
    )
    clf.train(seed=seed, enable_progress_bar=False, **(train_kwargs or {}))
    return clf


def _ssl_zero_shot_rows(adata, labels_key, batch_key, folds, task, args) -> list[dict]:
    """scssl's zero-shot kNN: pretraining on all cells with the options of
    ``scssl.model.pretrain_encoder`` (``ZERO_SHOT_ENCODER_KWARGS`` over the defaults), then kNN."""
    from scssl.model import ZERO_SHOT_ENCODER_KWARGS

    options = dict(ZERO_SHOT_ENCODER_KWARGS)
    labels = adata.obs[labels_key].astype(str).to_numpy()
    _, encoder, seconds = pretrained_encoder(adata, batch_key, args.pretrain_time, **options)
    latent = encoder.get_latent_representation()
    epochs = len(encoder.history["train_loss"])
    return _knn_rows(
        "ssl_knn", latent, labels, folds, task, seconds, epochs=epochs, encoder_options=options
    )


def _ssl_rows(adata, labels_key, batch_key, folds, task, args) -> list[dict]:
    """scssl with its defaults: pretraining on all cells, then linear probe and fine-tuning."""
    from scssl.benchmark import expected_calibration_error

    labels = adata.obs[labels_key].astype(str).to_numpy()
    data, encoder, pre_seconds = pretrained_encoder(adata, batch_key, args.pretrain_time)
    pre_epochs = len(encoder.history["train_loss"])
    latent = encoder.get_latent_representation()
    rows = []
    for fold, ref in folds:
        t0 = time.perf_counter()
        probe, query_features = linear_probe(latent, labels, ref, args.seed)
        proba = probe.predict_proba(query_features)
        predicted = probe.classes_[proba.argmax(1)]
        rows.append(
            _row(
                "ssl_linear_probe",
                task,
                fold,
                labels[~ref],
                predicted,
                proba.max(1),
                pre_seconds + time.perf_counter() - t0,
                C=float(probe.C),
            )
        )
        t0 = time.perf_counter()
        clf = finetuned_classifier(encoder, data, labels, ref, args.seed)
        ft_seconds = time.perf_counter() - t0
        query = np.flatnonzero(~ref)
        proba = clf.predict(indices=query, soft=True)
        raw = clf.predict(indices=query, soft=True, calibrated=False).to_numpy()
        ece_raw = expected_calibration_error(
            labels[~ref], proba.columns.to_numpy()[raw.argmax(1)], raw.max(1)
        )
        rows.append(
            _soft_row(
                "ssl_finetuned",
                task,
                fold,
                labels[~ref],
                proba,
                pre_seconds + ft_seconds,
                ece_uncalibrated=ece_raw,
                calibration=clf.calibration_,
                finetune_seconds=ft_seconds,
                pretrain_epochs=pre_epochs,
                **recorded_options(),
            )
        )
    return rows


def _cache_path(group: str, task: str, args) -> Path:
    """Where the rows of a group on a task with these settings are kept."""
    name = (
        f"{group}_{task}_p{args.pretrain_time.replace(':', '')}_e{args.scvi_epochs}"
        f"_sc{args.scanvi_epochs}_seed{args.seed}_m{args.max_cells}"
        + (f"_g{args.genes}" if args.genes is not None else "")
        + ".json"
    )
    return Path(args.cache) / name


def code_version() -> str:
    """The checkout's commit, with ``+changes-HASH`` when the library or the benchmarks differ
    from it (HASH: of the changes, so two uncommitted states differ; ``unknown`` outside git):
    recorded with each cached row, checked when merging."""
    root = Path(__file__).resolve().parents[1]
    paths = ("--", "src", "benchmarks/*.py")

    def git(*arguments: str) -> bytes:
        done = subprocess.run(["git", "-C", str(root), *arguments], capture_output=True)
        if done.returncode != 0:
            raise OSError(done.stderr.decode(errors="replace"))
        return done.stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").decode().strip()
        plain = ("--no-ext-diff", "--no-color", "--src-prefix=a/", "--dst-prefix=b/")
        changes = git("diff", *plain, "HEAD", *paths)
        untracked = git("ls-files", "-z", "--others", "--exclude-standard", *paths).split(b"\0")
        digest = hashlib.sha256(changes)
        for name in sorted(n for n in untracked if n):
            path = root / os.fsdecode(name)
            if path.is_file():
                digest.update(name + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return "unknown"
    if not changes and not any(untracked):
        return commit
    return f"{commit}+changes-{digest.hexdigest()[:8]}"


def cached_run_group(group: str, task: str, args) -> list[dict]:
    """``run_group`` with its rows kept on disk, so that groups can run in parallel processes
    (``--run GROUP TASK`` started by hand) and an interrupted benchmark resumes."""
    cache = _cache_path(group, task, args)
    running = cache.with_suffix(".running")
    if not cache.exists() and running.exists():
        while not cache.exists():  # another process computes it
            time.sleep(10)
    if cache.exists():
        return json.loads(cache.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    running.touch()
    try:
        code = code_version()  # before the run, which may take hours: the code that ran
        rows = run_group(group, task, args)
        for row in rows:
            row["code"] = code
        cache.write_text(json.dumps(rows))
    finally:
        running.unlink(missing_ok=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean over folds per task and method."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            sel = [r for r in rows if r["task"] == task and r["method"] == method]
            eces = [r["ece"] for r in sel if r["ece"] is not None]
            out.append(
                {
                    "task": task,
                    "method": method,
                    "n_folds": len(sel),
                    "macro_f1": float(np.mean([r["macro_f1"] for r in sel])),
                    "accuracy": float(np.mean([r["accuracy"] for r in sel])),
                    "ece": float(np.mean(eces)) if eces else None,
                    "seconds": float(np.mean([r["seconds"] for r in sel])),
                    "macro_f1_per_fold": {r["fold"]: r["macro_f1"] for r in sel},
                }
            )
    for task in dict.fromkeys(s["task"] for s in out):
        rows_t = [s for s in out if s["task"] == task]
        baselines = [s for s in rows_t if s["method"] not in SSL_ROWS]
        best = max(baselines, key=lambda s: s["macro_f1"]) if baselines else None
        for s in rows_t:
            if best is not None:
                s["ratio_to_best_baseline"] = s["macro_f1"] / best["macro_f1"]
                s["best_baseline"] = best["method"]
    return out


def _zero_shot_note(rows: list[dict]) -> str:
    """What the SSL kNN rows' encoder was pretrained with, when they record it."""
    options = next((r["encoder_options"] for r in rows if "encoder_options" in r), None)
    if options is None:
        return ""
    listed = ", ".join(f"{key}={value!r}" for key, value in options.items())
    return (
        f" SSL kNN rows: a second encoder, pretrained alike with {listed} "
        "(`scssl.model.pretrain_encoder`'s zero-shot options)."
    )


def markdown(summary: list[dict], rows: list[dict], args) -> str:
    lines = [
        "# Label transfer",
        "",
        f"Seed {args.seed}; scssl pretrained for {args.pretrain_time} (DD:HH:MM:SS) with its "
        "defaults, then SSLClassifier's default fine-tuning; scVI and scANVI with their default "
        f"epochs{'' if args.scvi_epochs is None else f' (scVI capped at {args.scvi_epochs})'}. "
        "Seconds: wall clock on 2 CPU cores."
        + (
            f" A gene panel (`--genes {args.genes}`): every method sees only the "
            f"{args.genes} batch-aware most variable genes."
            if args.genes is not None
            else ""
        )
        + _zero_shot_note(rows),
        "",
    ]
    for task in dict.fromkeys(s["task"] for s in summary):
        sel = sorted([s for s in summary if s["task"] == task], key=lambda s: -s["macro_f1"])
        task_rows = [r for r in rows if r["task"] == task]
        title = TITLES[task]
        lines += [
            f"## {title}",
            "",
            "| method | macro F1 | / best baseline | accuracy | ECE | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for s in sel:
            ece = "-" if s["ece"] is None else f"{s['ece']:.3f}"
            lines.append(
                f"| {method_name(s['method'], task_rows)} | {s['macro_f1']:.3f} | "
                f"{s.get('ratio_to_best_baseline', float('nan')):.3f} | {s['accuracy']:.3f} | "
                f"{ece} | {s['seconds']:.0f} |"
            )
        if task == "pbmc3tech":
            folds = list(sel[0]["macro_f1_per_fold"])
            lines += ["", "Macro F1 per held-out chemistry:", ""]
            lines += ["| method | " + " | ".join(folds) + " |", "|---" * (len(folds) + 1) + "|"]
            for s in sel:
                lines.append(
                    f"| {method_name(s['method'], task_rows)} | "
                    + " | ".join(f"{s['macro_f1_per_fold'][f]:.3f}" for f in folds)
                    + " |"
                )
        ft = [r for r in rows if r["task"] == task and r["method"] == "ssl_finetuned"]
        if ft:
            lines += ["", "Calibration of the fine-tuned classifier (temperature scaling):", ""]
            for r in ft:
                c = r.get("calibration") or {}
                lines.append(
                    f"- {r['fold']}: temperature {c.get('temperature', float('nan')):.2f}; ECE on "
                    f"the held-out reference cells {c.get('ece_before', float('nan')):.3f} -> "
                    f"{c.get('ece_after', float('nan')):.3f}; on the query "
                    f"{r['ece_uncalibrated']:.3f} -> {r['ece']:.3f}"
                )
        lines.append("")
    return "\n".join(lines)


def plots(summary: list[dict], rows: list[dict], out: Path, adata_labels: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    import scssl

    tasks = list(dict.fromkeys(s["task"] for s in summary))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sel = sorted([s for s in summary if s["task"] == task], key=lambda s: s["macro_f1"])
        colours = ["tab:orange" if s["method"] in SSL_ROWS else "tab:gray" for s in sel]
        task_rows = [r for r in rows if r["task"] == task]
        names = [method_name(s["method"], task_rows) for s in sel]
        ax.barh(names, [s["macro_f1"] for s in sel], color=colours)
        for i, s in enumerate(sel):
            ax.text(s["macro_f1"] + 0.005, i, f"{s['macro_f1']:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.08)
        ax.set_xlabel("macro F1")
        ax.set_title(task)
    fig.tight_layout()
    fig.savefig(out.with_name(out.name + "_macro_f1.png"), dpi=150)
    plt.close(fig)
    if "kang" in adata_labels:
        kang_rows = [r for r in rows if r["task"] == "kang"]
        obs = pd.DataFrame({"cell_type": adata_labels["kang"]})
        for r in kang_rows:
            obs[r["method"]] = r["_predicted"]
        if "ssl_finetuned" in obs:
            kang_confusion(obs["cell_type"], obs["ssl_finetuned"], out)
        methods = {method_name(r["method"], kang_rows): r["method"] for r in kang_rows}
        _, ax = plt.subplots(figsize=(12, 4.5))
        scssl.pl.per_class_f1(
            obs,
            "cell_type",
            methods,
            ax=ax,
            show=False,
            save=str(out.with_name(out.name + "_kang_per_class_f1.png")),
        )
        plt.close("all")


def kang_confusion(truth, predicted, out: Path) -> None:
    """The fine-tuned classifier's confusion matrix on Kang's query, saved next to ``out``."""
    import matplotlib.pyplot as plt
    import pandas as pd

    import scssl

    obs = pd.DataFrame({"cell_type": np.asarray(truth), "ssl_finetuned": np.asarray(predicted)})
    scssl.pl.confusion_matrix(
        obs,
        "cell_type",
        "ssl_finetuned",
        show=False,
        save=str(out.with_name(out.name + "_kang_confusion.png")),
    )
    plt.close("all")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}; give a number of genes of at least 1")
    return value


def warn_other_code(cached: list[dict], cache: str) -> None:
    """The cache is keyed by settings, not by code: say when its rows come from other code."""
    current = code_version()
    other = sorted({r.get("code", "unrecorded") for r in cached} - {current})
    if other:
        print(
            f"warning: cached rows from code {', '.join(other)}, this checkout is {current}; "
            f"if the library changed in between, delete {cache} and run the groups again",
            flush=True,
        )


def merge(args) -> None:
    """Results JSON + cached groups it lacks (``--replace``: the cached groups, whether it has
    them or not) -> rewritten JSON, markdown and macro F1 plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(args.out)
    payload = json.loads(out.with_suffix(".json").read_text())
    recorded = payload.get("args", {}).get("genes")
    if recorded != args.genes:
        raise SystemExit(
            f"{out.with_suffix('.json')} holds rows of --genes {recorded}; merge with "
            f"--genes {recorded} (got {args.genes}), or rows of two gene sets would mix."
        )
    rows = payload["rows"]
    paths = [_cache_path(group, task, args) for task in args.tasks for group in args.groups]
    cached = [r for path in paths if path.exists() for r in json.loads(path.read_text())]
    warn_other_code(cached, args.cache)
    if args.replace:  # the cached groups' rows take the place of the same methods' rows
        fresh = {(r["task"], r["method"]) for r in cached}
        rows = [r for r in rows if (r["task"], r["method"]) not in fresh]
    have = {(r["task"], r["method"]) for r in rows}
    for r in cached:
        if (r["task"], r["method"]) in have:
            continue
        predicted = r.pop("_predicted", None)
        if (r["task"], r["method"]) == ("kang", "ssl_finetuned") and predicted:
            adata, key, _, folds = load_task(
                "kang", Path(args.data_dir), args.max_cells, args.seed, args.genes
            )
            truth = adata.obs[key].astype(str).to_numpy()[~folds[0][1]]
            kang_confusion(truth, predicted, out)
        rows.append(r)
        print(f"added {r['task']} {r['method']} {r['fold']}")
    summary = summarise(rows)
    plots(summary, rows, out, {})
    kang = [r for r in rows if r["task"] == "kang"]
    if kang:
        table = pd.DataFrame({method_name(r["method"], kang): r["per_class_f1"] for r in kang})
        ax = table.plot.bar(figsize=(12, 4.5), width=0.85)
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1.05)
        ax.set_title("Kang CTRL -> STIM, per-class F1")
        ax.legend(
            [f"{c} (macro F1 {table[c].mean():.3f})" for c in table.columns],
            fontsize=8,
            loc="lower left",
        )
        ax.figure.tight_layout()
        ax.figure.savefig(out.with_name(out.name + "_kang_per_class_f1.png"), dpi=150)
        plt.close("all")
    payload.update(summary=summary, rows=rows)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    text = markdown(summary, rows, args)
    out.with_suffix(".md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--tasks", nargs="+", default=["kang", "pbmc3tech"])
    parser.add_argument("--groups", nargs="+", default=list(METHOD_GROUPS))
    parser.add_argument(
        "--pretrain-time", default="00:00:10:00", help="scssl pretraining budget (DD:HH:MM:SS)"
    )
    parser.add_argument("--scvi-epochs", type=int, default=None, help="default: scVI's own")
    parser.add_argument("--scanvi-epochs", type=int, default=None, help="default: scANVI's own")
    parser.add_argument("--max-cells", type=int, default=None, help="subsample (smoke tests)")
    parser.add_argument(
        "--genes", type=_positive, default=None, help="every method on this many HVGs only"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", nargs=2, metavar=("GROUP", "TASK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "label_transfer"))
    parser.add_argument("--cache", default="/tmp/scssl_label_transfer_cache")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add cached groups missing from the existing results JSON and rewrite the outputs",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --merge: the cached groups' rows replace the JSON's rows of the same methods",
    )
    args = parser.parse_args()

    if args.merge:
        merge(args)
        return
    if args.run:
        print("RESULT " + json.dumps(cached_run_group(args.run[0], args.run[1], args)))
        return
    passthrough = [a for a in sys.argv[1:]]
    rows: list[dict] = []
    for task in args.tasks:
        for group in args.groups:
            print(f"running {group} on {task} ...", flush=True)
            completed = subprocess.run(
                [sys.executable, __file__, *passthrough, "--run", group, task],
                capture_output=True,
                text=True,
            )
            results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode != 0 or not results:
                print(completed.stderr[-3000:], flush=True)
                raise SystemExit(f"{group} on {task} failed")
            new = json.loads(results[-1][len("RESULT ") :])
            for r in new:
                print(f"  {r['method']} {r['fold']}: macro F1 {r['macro_f1']:.3f}", flush=True)
            rows += new
    labels = {}
    if "kang" in args.tasks:
        adata, key, _, folds = load_task(
            "kang", Path(args.data_dir), args.max_cells, args.seed, args.genes
        )
        labels["kang"] = adata.obs[key].astype(str).to_numpy()[~folds[0][1]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    plots(summary, rows, out, labels)
    for r in rows:
        r.pop("_predicted", None)
    payload = {"args": vars(args), "summary": summary, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    text = markdown(summary, rows, args)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
