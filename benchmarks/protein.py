"""RNA -> protein on 10x PBMC 5k CITE-seq: scssl vs totalVI vs ridge regression.

Cells are split 80/20 with a fixed seed. Every method sees RNA and proteins of the training
cells and predicts the proteins of the held-out cells from their RNA alone; scores are computed
on ``log1p`` protein counts (Pearson flattened / mean per protein / mean per cell, Spearman, MSE).

- scssl: an ``SSLEncoder`` pretrained by random masking on the RNA of all cells (no proteins,
  no labels; the held-out cells' RNA is unlabelled input, as for totalVI), then an
  ``SSLProteinPredictor.from_encoder`` fine-tuned on the training cells. Variants: frozen
  encoder, other head sizes, no pretraining.
- totalVI: trained on all cells with the held-out cells' proteins set to zero in their own batch
  (totalVI's batch mask marks them unmeasured), proteins imputed with
  ``transform_batch="reference"``.
- ridge: ``RidgeCV`` from log-normalised RNA (all genes) to log1p proteins.

    python benchmarks/protein.py [--data ../shared/data/pbmc5k_citeseq.h5mu] [--methods ...]

Methods run one by one; results accumulate in ``benchmarks/results/protein_pbmc5k.json``
(re-running a method replaces its entry), then the markdown table and the PNG are rewritten
from the JSON. Timings are wall-clock on whatever machine ran them (not comparable under
contention).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pbmc5k_citeseq.h5mu"
)
JSON_PATH = RESULTS / "protein_pbmc5k.json"
PRED_PATH = RESULTS / "protein_pbmc5k_predictions.csv.gz"
MD_PATH = RESULTS / "protein_pbmc5k.md"
PNG_PATH = RESULTS / "protein_pbmc5k_scatter.png"

SSL_VARIANTS = {
    # name: (pretrain, freeze_encoder, n_hidden_head, lr)
    "scssl": (True, False, (256,), 1e-3),
    "scssl_frozen": (True, True, (256,), 1e-3),
    "scssl_linear_head": (True, False, (), 1e-3),
    "scssl_head_512x2": (True, False, (512, 512), 1e-3),
    "scssl_lr3e-4": (True, False, (256,), 3e-4),
    "scssl_no_pretraining": (False, False, (256,), 1e-3),
}


def load(path: Path):
    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rna = md.read_h5ad(str(path), "rna")
        prot = md.read_h5ad(str(path), "prot")
    return rna, prot


def split(n_obs: int, seed: int, test_share: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    test = np.zeros(n_obs, dtype=bool)
    test[rng.permutation(n_obs)[: round(test_share * n_obs)]] = True
    return test


_ENCODERS: dict = {}


def pretrained_encoder(rna, epochs: int, seed: int):
    import scvi

    import scssl

    if "encoder" in _ENCODERS:
        return _ENCODERS["encoder"]
    # Cached on disk so that the variants, run in separate invocations, share one pretraining.
    cache = Path(f"/tmp/scssl_protein_encoder_seed{seed}_epochs{epochs}")
    data = rna.copy()
    if (cache / "model.pt").exists():
        encoder = scssl.model.SSLEncoder.load(str(cache), adata=data)
        meta = json.loads((cache / "meta.json").read_text())
    else:
        scvi.settings.seed = seed
        scssl.model.SSLEncoder.setup_anndata(data)
        encoder = scssl.model.SSLEncoder(data)
        t0 = time.perf_counter()
        encoder.train(max_epochs=epochs, enable_progress_bar=False)
        meta = {
            "seconds": time.perf_counter() - t0,
            "epochs": len(encoder.history["train_loss"]),
        }
        encoder.save(str(cache), overwrite=True)
        (cache / "meta.json").write_text(json.dumps(meta))
    _ENCODERS.update(encoder=encoder, **meta)
    return encoder


def run_scssl(variant, rna, prot, test, args) -> tuple[pd.DataFrame, dict]:
    import mudata as md
    import scvi

    import scssl

    pretrain, freeze, head, lr = SSL_VARIANTS[variant]
    train_cells = ~test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData({"rna": rna[train_cells].copy(), "prot": prot[train_cells].copy()})
    info: dict = {"pretrain": pretrain, "freeze_encoder": freeze, "n_hidden_head": list(head)}
    if pretrain:
        encoder = pretrained_encoder(rna, args.pretrain_epochs, args.seed)
        info["pretrain_epochs"] = _ENCODERS["epochs"]
        info["pretrain_seconds"] = _ENCODERS["seconds"]
        scvi.settings.seed = args.seed
        model = scssl.model.SSLProteinPredictor.from_encoder(
            encoder, mdata, freeze_encoder=freeze, n_hidden_head=head
        )
    else:
        scvi.settings.seed = args.seed
        scssl.model.SSLProteinPredictor.setup_mudata(mdata)
        model = scssl.model.SSLProteinPredictor(mdata, n_hidden_head=head)
    t0 = time.perf_counter()
    model.train(
        max_epochs=args.finetune_epochs,
        batch_size=args.finetune_batch_size,
        lr=lr,
        early_stopping_patience=args.patience,
        enable_progress_bar=False,
    )
    info["finetune_seconds"] = time.perf_counter() - t0
    info["finetune_epochs"] = len(model.history["train_loss"])
    info["lr"] = lr
    info["batch_size"] = args.finetune_batch_size
    return model.predict_protein(rna[test].copy()), info


def run_totalvi(rna, prot, test, args) -> tuple[pd.DataFrame, dict]:
    from scssl.benchmark import totalvi_protein_prediction

    t0 = time.perf_counter()
    prediction, model = totalvi_protein_prediction(
        rna,
        prot,
        test,
        max_epochs=args.totalvi_epochs,
        seed=args.seed,
        enable_progress_bar=False,
        early_stopping=True,
    )
    info = {
        "seconds": time.perf_counter() - t0,
        "epochs": len(model.history["elbo_train"]),
    }
    # The background-inclusive variant, reported alongside.
    _, with_background = model.get_normalized_expression(
        indices=np.flatnonzero(test),
        transform_batch="reference",
        include_protein_background=True,
        return_mean=True,
    )
    info["with_background"] = np.log1p(np.asarray(with_background, dtype=np.float64)).tolist()
    return prediction, info


def run_ridge(rna, prot, test, args) -> tuple[pd.DataFrame, dict]:
    from scssl.benchmark import ridge_protein_prediction

    t0 = time.perf_counter()
    prediction = ridge_protein_prediction(rna[~test], prot[~test], rna[test])
    return prediction, {"seconds": time.perf_counter() - t0}


def observed(prot, test) -> pd.DataFrame:
    x = prot.X[test]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return pd.DataFrame(
        np.log1p(x.astype(np.float64)), index=prot.obs_names[test], columns=prot.var_names
    )


def write_reports(truth: pd.DataFrame) -> None:
    results = json.loads(JSON_PATH.read_text())
    methods = results["methods"]
    order = sorted(methods, key=lambda m: -methods[m]["pearson_flattened"])
    proteins = list(truth.columns)
    lines = [
        "# RNA -> protein, 10x PBMC 5k CITE-seq (held-out 20% of cells)",
        "",
        f"{results['n_train']} training cells, {results['n_test']} held-out cells, "
        f"{results['n_genes']} genes, {len(proteins)} proteins; split seed {results['seed']}. "
        "Scores on log1p protein counts.",
        "",
        "| method | Pearson flattened | Pearson mean per protein | Pearson mean per cell "
        "| Spearman flattened | Spearman mean per protein | MSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in order:
        r = methods[m]
        lines.append(
            f"| {m} | {r['pearson_flattened']:.4f} | {r['pearson_mean_per_protein']:.4f} | "
            f"{r['pearson_mean_per_cell']:.4f} | {r['spearman_flattened']:.4f} | "
            f"{r['spearman_mean_per_protein']:.4f} | {r['mse']:.4f} |"
        )
    lines += ["", "Pearson r per protein:", "", "| method | " + " | ".join(proteins) + " |"]
    lines.append("|---" * (len(proteins) + 1) + "|")
    for m in order:
        per = methods[m]["per_protein"]
        lines.append(f"| {m} | " + " | ".join(f"{per[p]['pearson']:.3f}" for p in proteins) + " |")
    lines += [
        "",
        "Training details (wall-clock seconds on a shared 2-core CPU; not comparable):",
        "",
    ]
    for m in order:
        info = {k: v for k, v in methods[m].get("info", {}).items() if k != "with_background"}
        lines.append(f"- {m}: {json.dumps(info)}")
    MD_PATH.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictions = pd.read_csv(PRED_PATH, index_col=0)
    shown = [m for m in ("scssl", "totalvi", "ridge") if m in methods]
    fig, axes = plt.subplots(
        len(shown), len(proteins), figsize=(2.2 * len(proteins), 2.3 * len(shown)), squeeze=False
    )
    for i, m in enumerate(shown):
        for j, p in enumerate(proteins):
            ax = axes[i, j]
            ax.scatter(truth[p], predictions[f"{m}|{p}"], s=2, alpha=0.4, rasterized=True)
            lo = min(truth[p].min(), predictions[f"{m}|{p}"].min())
            hi = max(truth[p].max(), predictions[f"{m}|{p}"].max())
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            ax.set_title(f"{p}  r={methods[m]['per_protein'][p]['pearson']:.2f}", fontsize=8)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(f"{m}\npredicted log1p", fontsize=8)
            if i == len(shown) - 1:
                ax.set_xlabel("observed log1p", fontsize=7)
    fig.tight_layout()
    fig.savefig(PNG_PATH, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--methods", default="ridge,scssl,totalvi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=50)
    parser.add_argument("--finetune-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--finetune-batch-size", type=int, default=128)
    parser.add_argument("--totalvi-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reset", action="store_true", help="start a fresh JSON")
    parser.add_argument("--tag", default="", help="suffix of the method names in the results")
    args = parser.parse_args()

    import torch

    from scssl.benchmark.metrics import protein_prediction_scores

    torch.set_num_threads(args.threads)
    rna, prot = load(Path(args.data))
    test = split(rna.n_obs, args.seed)
    truth = observed(prot, test)
    RESULTS.mkdir(exist_ok=True)
    if JSON_PATH.exists() and not args.reset:
        results = json.loads(JSON_PATH.read_text())
    else:
        results = {"methods": {}}
    results.update(
        dataset="10x PBMC 5k CITE-seq (pbmc5k_citeseq.h5mu)",
        n_train=int((~test).sum()),
        n_test=int(test.sum()),
        n_genes=int(rna.n_vars),
        proteins=list(map(str, prot.var_names)),
        seed=args.seed,
    )
    predictions = (
        pd.read_csv(PRED_PATH, index_col=0)
        if PRED_PATH.exists() and not args.reset
        else pd.DataFrame(index=truth.index)
    )
    for method in args.methods.split(","):
        print(f"== {method}", flush=True)
        if method in SSL_VARIANTS:
            prediction, info = run_scssl(method, rna, prot, test, args)
        elif method == "totalvi":
            prediction, info = run_totalvi(rna, prot, test, args)
            background = pd.DataFrame(
                np.asarray(info.pop("with_background")), index=truth.index, columns=truth.columns
            )
            scores = protein_prediction_scores(truth, background)
            scores["info"] = {"include_protein_background": True}
            results["methods"][f"totalvi_with_background{args.tag}"] = scores
        elif method == "ridge":
            prediction, info = run_ridge(rna, prot, test, args)
        else:
            raise SystemExit(f"unknown method {method!r}")
        prediction = prediction.loc[truth.index, truth.columns]
        scores = protein_prediction_scores(truth, prediction)
        scores["info"] = info
        method = f"{method}{args.tag}"
        results["methods"][method] = scores
        print(
            f"{method}: Pearson flattened {scores['pearson_flattened']:.4f}, per protein "
            f"{scores['pearson_mean_per_protein']:.4f}, "
            f"per cell {scores['pearson_mean_per_cell']:.4f}",
            flush=True,
        )
        # Re-read before writing: several invocations (methods) may run at the same time.
        if JSON_PATH.exists():
            on_disk = json.loads(JSON_PATH.read_text())
            on_disk["methods"].update(results["methods"])
            results["methods"] = on_disk["methods"]
        if PRED_PATH.exists():
            predictions = pd.read_csv(PRED_PATH, index_col=0)
        for p in truth.columns:
            predictions[f"{method}|{p}"] = prediction[p].to_numpy()
        JSON_PATH.write_text(json.dumps(results, indent=2))
        predictions.to_csv(PRED_PATH)
        write_reports(truth)


if __name__ == "__main__":
    main()
