"""The ``scssl`` command: ``demo``, ``pretrain``, ``embed`` and ``benchmark``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from scssl.data import DEFAULT_MIN_OVERLAP
from scssl.module import PRETEXTS

#: Options of ``scssl pretrain`` passed to :class:`~scssl.model.SSLEncoder` under their names.
ENCODER_OPTIONS = (
    "pretext",
    "gene_sets",
    "likelihood",
    "n_latent",
    "mask_rate",
    "batch_adversary_weight",
)
#: Options of ``scssl benchmark`` passed to :func:`~scssl.benchmark.run_benchmark` as they are.
RUN_OPTIONS = ("task", "out", "batch_key", "labels_key", "methods", "epochs", "max_cells", "layer")
#: Options of ``scssl benchmark`` for scssl's encoder in every task (``scssl_kwargs``).
BENCHMARK_ENCODER_OPTIONS = ("pretext", "n_latent")


def _options(args: argparse.Namespace, names) -> dict:
    """``{name: args.name}`` for ``names``."""
    return {name: getattr(args, name) for name in names}


#: How to turn other files into an ``.h5ad``, by suffix.
_CONVERSIONS = {
    (".csv", ".tsv", ".txt", ".gz"): "read it with anndata.read_csv(path) (tab-separated: "
    "anndata.read_text(path, delimiter='\\t'); cells as rows) and save it with "
    "adata.write_h5ad('cells.h5ad')",
    (".h5mu",): "it is a MuData file: save its RNA modality with "
    "mudata.read_h5mu(path).mod['rna'].write_h5ad('rna.h5ad')",
    (".h5",): "if it is a 10x Genomics .h5, read it with scanpy.read_10x_h5(path) and save it "
    "with adata.write_h5ad('cells.h5ad')",
    (".loom",): "read it with anndata.read_loom(path) and save it with adata.write_h5ad(...)",
    (".zarr",): "read it with anndata.read_zarr(path) and save it with adata.write_h5ad(...)",
    (".mtx",): "read the 10x folder with scanpy.read_10x_mtx(folder) and save it with "
    "adata.write_h5ad(...)",
}


def _conversion_hint(path: Path) -> str:
    suffix = path.suffix.lower()
    for suffixes, hint in _CONVERSIONS.items():
        if suffix in suffixes:
            return hint
    return "convert it to AnnData's .h5ad format first (adata.write_h5ad('cells.h5ad'))"


def _read_h5ad(path: str, option: str):
    """The AnnData in ``path``, or an error naming the option and how to convert the file."""
    import anndata as ad
    import h5py

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{option} {file} does not exist.")
    if file.is_dir():
        raise ValueError(
            f"{option} {file} is a directory, not an .h5ad file; {_conversion_hint(file)}."
        )
    if not h5py.is_hdf5(file):
        raise ValueError(
            f"{option} {file} is not an .h5ad file (AnnData's HDF5 format); "
            f"{_conversion_hint(file)}."
        )
    try:
        return ad.read_h5ad(file)
    except Exception as error:  # an HDF5 file that is not an AnnData
        raise ValueError(
            f"{option} {file} is an HDF5 file but not a readable .h5ad ({error}); "
            f"{_conversion_hint(file)}."
        ) from error


def _model_dir(path: str, option: str = "--model") -> Path:
    """A directory holding a saved model, or an error saying what was given instead."""
    directory = Path(path)
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is a file, not a directory"
        raise FileNotFoundError(
            f"{option} {directory} {what}; pass the folder a model was saved to "
            "(scssl pretrain --out, or model.save(folder))."
        )
    return directory


def _quiet_libraries() -> None:
    """Keep library notices a user cannot act on (Lightning tips, deprecations) out of the demo."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import scvi

    from scssl.datasets import kang_ifnb_pbmc_demo
    from scssl.model import query_positions, train_classifier

    _quiet_libraries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed
    adata = kang_ifnb_pbmc_demo()
    control = (adata.obs["stim"] == "CTRL").to_numpy()
    reference, query = adata[control].copy(), adata[~control].copy()
    print(
        f"[1/4] Kang PBMC demo data: {adata.n_obs} cells x {adata.n_vars} genes (raw counts); "
        f"reference: {reference.n_obs} control cells with labels, query: {query.n_obs} "
        "interferon-stimulated cells"
    )
    print(
        f"[2/4] scssl: pretraining on all cells without labels (at most {args.minutes:g} min, "
        "2,000 variable genes, condition as batch), then fine-tuning on the control labels"
    )
    start = time.perf_counter()
    minutes = int(args.minutes)
    seconds = round((args.minutes - minutes) * 60)
    model = train_classifier(
        reference,
        query,
        "cell_type",
        batch_key="stim",
        pretrain_time=f"00:00:{minutes:02d}:{seconds:02d}",
        seed=args.seed,
        train_kwargs=None if args.finetune_epochs is None else {"max_epochs": args.finetune_epochs},
    )
    print(f"      trained in {time.perf_counter() - start:.0f} s")
    model.save(out / "model", overwrite=True)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    predicted = model.predict(indices=query_positions(model))
    _demo_scores(reference, query, truth, predicted, args.seed)
    cell_types = np.concatenate([reference.obs["cell_type"].astype(str).to_numpy(), truth])
    _demo_umap(model, cell_types, out, args.seed)
    print(f"Done: model in {out / 'model'}, UMAP in {out / 'umap_scssl.png'}")
    return 0


def _demo_scores(reference, query, truth, predicted, seed: int) -> None:
    import anndata as ad

    from scssl.benchmark import knn_transfer, logistic_regression_transfer, pca_embedding
    from scssl.metrics import accuracy, macro_f1

    print("[3/4] Label transfer control -> stimulated, against the usual baselines")
    both = ad.concat([reference, query])
    pca = pca_embedding(both, seed=seed)
    n_ref = reference.n_obs
    reference_labels = reference.obs["cell_type"].astype(str).to_numpy()
    rows = [("scssl (pretrained + fine-tuned)", predicted)]
    for metric in ("euclidean", "cosine"):
        pca_predicted, _ = knn_transfer(pca[:n_ref], reference_labels, pca[n_ref:], metric=metric)
        rows.append((f"PCA-50 + kNN (k=5, {metric})", pca_predicted))
    logreg = logistic_regression_transfer(reference, reference_labels, query, seed=seed)
    rows.append(("logistic regression", logreg))
    print(f"      {'method':<33}{'macro F1':>10}{'accuracy':>10}")
    for name, answer in rows:
        print(f"      {name:<33}{macro_f1(truth, answer):>10.3f}{accuracy(truth, answer):>10.3f}")


def _demo_umap(model, cell_types, out: Path, seed: int) -> None:
    """UMAP of the fine-tuned embedding by condition and cell type, legends inside the file."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import scanpy as sc

    print("[4/4] UMAP of the scssl embedding (all cells)")
    adata = model.adata.copy()
    adata.obsm["X_scssl"] = model.get_latent_representation()
    sc.pp.neighbors(adata, use_rep="X_scssl", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    batch_key = model.registry_["setup_args"]["batch_key"]  # the condition (None: one)
    condition = adata.obs[batch_key] if batch_key is not None else "all cells"
    adata.obs["condition"] = pd.Series(condition, index=adata.obs_names).astype("category")
    adata.obs["cell type"] = pd.Categorical(cell_types)
    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, key in zip(axes, ("condition", "cell type"), strict=True):
        sc.pl.umap(adata, color=key, ax=ax, show=False, title=key)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "umap_scssl.png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def _pretrain(args: argparse.Namespace) -> int:
    import scvi

    from scssl.model import SSLEncoder

    adata = _read_h5ad(args.input, "--input")
    if Path(args.out).exists() and not args.overwrite:  # before training, not after it
        raise ValueError(f"{args.out} already exists; pass --overwrite or choose another --out.")
    scvi.settings.seed = args.seed
    try:
        SSLEncoder.setup_anndata(
            adata, layer=args.layer, batch_key=args.batch_key, log_normalized=args.log_normalized
        )
    except ValueError as error:  # the data check's advice names Python arguments
        if "counts" not in str(error) and "log_normalized" not in str(error):
            raise
        raise ValueError(
            f"{error} On the command line: --layer NAME reads the raw counts from a layer, "
            "--log-normalized declares normalize_total + log1p values."
        ) from error
    model = SSLEncoder(
        adata, batch_centering=not args.no_batch_centering, **_options(args, ENCODER_OPTIONS)
    )
    model.train(max_epochs=args.max_epochs, batch_size=args.batch_size)
    model.save(args.out, overwrite=args.overwrite)
    print(f"Saved the pretrained model to {args.out}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from scssl.model import SSLEncoder
    from scssl.tl import embed
    from scssl.tl._uns import uns_key

    model_dir = _model_dir(args.model)
    adata = _read_h5ad(args.input, "--input")
    model = SSLEncoder.load_query_data(adata, model_dir, min_overlap=args.min_overlap)
    embed(adata, model, key_added=args.key_added, min_overlap=args.min_overlap)
    adata.write_h5ad(args.output)
    alignment = adata.uns[uns_key(args.key_added)]["alignment"]
    print(
        f"Embedded {adata.n_obs} cells ({alignment['n_matched']} of {alignment['n_vocabulary']} "
        f"model genes matched) into obsm[{args.key_added!r}] of {args.output}"
    )
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from scssl.benchmark import markdown_table, run_benchmark

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    scssl_kwargs = {
        name: value
        for name, value in _options(args, BENCHMARK_ENCODER_OPTIONS).items()
        if value is not None
    }
    task_kwargs = _task_options(args, scssl_kwargs)
    if scssl_kwargs:
        task_kwargs["scssl_kwargs"] = scssl_kwargs
    result = run_benchmark(
        args.data,
        seed=args.seed,
        plots=not args.no_plots,
        **_options(args, RUN_OPTIONS),
        **task_kwargs,
    )
    print(markdown_table(result))
    return 0


def _declared_task_options() -> dict[str, tuple]:
    """``{option name: (TaskOption, tasks declaring it, help of each)}`` from the registry."""
    from scssl.benchmark import TASK_OPTIONS

    declared: dict[str, tuple] = {}
    for task, options in TASK_OPTIONS.items():
        for option in options:
            first, tasks, helps = declared.setdefault(option.name, (option, [], []))
            if (first.type, first.scssl_kwarg) != (option.type, option.scssl_kwarg):
                raise ValueError(
                    f"Tasks {tasks[0]!r} and {task!r} declare the option {option.name!r} with "
                    "different types; give one of them another name."
                )
            tasks.append(task)
            helps.append(f"{task}: {option.help}" if option.help else task)
    return declared


def _task_options(args: argparse.Namespace, scssl_kwargs: dict) -> dict:
    """The task options given on the command line (``scssl_kwarg`` ones into ``scssl_kwargs``)."""
    task_kwargs = {}
    for name, (option, tasks, _) in _declared_task_options().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if args.task not in tasks:
            plural = "s" if len(tasks) > 1 else ""
            raise ValueError(f"{option.flag} applies to the {' and '.join(tasks)} task{plural}.")
        (scssl_kwargs if option.scssl_kwarg else task_kwargs)[name] = value
    return task_kwargs


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: works, with a FutureWarning naming the new one."""

    def __init__(self, *args, new: str, **kwargs):
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            f"{option_string} is deprecated; use {self.new}.", FutureWarning, stacklevel=2
        )
        setattr(namespace, self.dest, values)


def _add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="pretrain on shipped Kang PBMCs, embed, transfer labels, UMAP (a few minutes)",
    )
    demo.add_argument("--out", default="scssl_demo", help="output folder (model, UMAP PNG)")
    demo.add_argument(
        "--minutes", type=float, default=3.0, help="pretraining time bound in minutes (default 3)"
    )
    demo.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="fine-tuning epochs (default: SSLClassifier.train's)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)


def _add_pretrain(commands) -> None:
    pretrain = commands.add_parser("pretrain", help="pretrain an SSLEncoder on an .h5ad file")
    pretrain.add_argument("--input", required=True, help=".h5ad with raw counts")
    pretrain.add_argument("--out", required=True, help="folder to save the model to")
    pretrain.add_argument("--layer", default=None, help="layer with counts (default: X)")
    pretrain.add_argument("--batch-key", default=None)
    pretrain.add_argument("--log-normalized", action="store_true", help="X is log1p-normalised")
    pretrain.add_argument("--pretext", default="random_mask", choices=PRETEXTS)
    pretrain.add_argument(
        "--gene-sets",
        default=None,
        help="GMT file or 'hallmark' (gene_programme_mask, programme_to_tf)",
    )
    pretrain.add_argument("--likelihood", default="mse", choices=("mse", "nb"))
    pretrain.add_argument("--n-latent", type=int, default=64)
    pretrain.add_argument(
        "--mask-rate", type=float, default=None, help="default: 0.5 genes, 0.25 programmes"
    )
    pretrain.add_argument(
        "--no-batch-centering",
        action="store_true",
        help="do not centre each batch's mean expression (with --batch-key)",
    )
    pretrain.add_argument(
        "--batch-adversary-weight",
        type=float,
        default=0.0,
        help="with --batch-key: train the encoder to hide the batch (e.g. 0.3; default off)",
    )
    pretrain.add_argument("--max-epochs", type=int, default=None)
    pretrain.add_argument("--batch-size", type=int, default=128)
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--overwrite", action="store_true")
    pretrain.set_defaults(func=_pretrain)


def _add_embed(commands) -> None:
    embed = commands.add_parser("embed", help="embed an .h5ad file with a saved model")
    embed.add_argument("--model", required=True, help="folder of a saved SSLEncoder")
    embed.add_argument("--input", required=True)
    embed.add_argument("--output", required=True)
    embed.add_argument("--key-added", default="X_scssl")
    embed.add_argument("--min-overlap", type=float, default=DEFAULT_MIN_OVERLAP)
    embed.set_defaults(func=_embed)


def _add_benchmark(commands) -> None:
    """``scssl benchmark``: its tasks, methods and task options come from the registry."""
    from scssl.benchmark import TASK_METHODS

    bench = commands.add_parser(
        "benchmark",
        help="score scssl against PCA, scVI, scANVI, totalVI, logistic/ridge regression",
        description="Run a benchmark task and write results.json, report.md and PNG plots.",
    )
    bench.add_argument(
        "--data", required=True, help=".h5ad with raw counts (.h5mu of RNA + proteins: protein)"
    )
    bench.add_argument("--task", required=True, choices=sorted(TASK_METHODS))
    bench.add_argument("--out", required=True, help="output folder")
    bench.add_argument("--batch-key", default=None, help="obs column of batches")
    bench.add_argument("--labels-key", default=None, help="obs column of cell types")
    bench.add_argument(
        "--label-key",
        dest="labels_key",
        action=_DeprecatedAlias,
        new="--labels-key",
        default=None,
        help="deprecated spelling of --labels-key",
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=sorted({m for known in TASK_METHODS.values() for m in known}),
        help="methods to run (default: all of the task)",
    )
    bench.add_argument("--epochs", type=int, default=None, help="epochs of the neural methods")
    bench.add_argument("--max-cells", type=int, default=None, help="subsample to this many cells")
    bench.add_argument("--layer", default=None, help="layer with counts (default: X)")
    bench.add_argument("--pretext", default=None, choices=PRETEXTS, help="scssl pretext")
    bench.add_argument("--n-latent", type=int, default=None, help="scssl latent size")
    for name, (option, _, helps) in _declared_task_options().items():
        bench.add_argument(
            option.flag, dest=name, type=option.type, default=None, help="; ".join(helps)
        )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument("--no-plots", action="store_true")
    bench.set_defaults(func=_benchmark)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scssl`` command."""
    parser = argparse.ArgumentParser(
        prog="scssl", description="Self-supervised learning for single-cell omics."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands)
    _add_pretrain(commands)
    _add_embed(commands)
    _add_benchmark(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scssl`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, OSError) as error:
        # one line, no traceback: the message says what is wrong and how to fix it
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"scssl {args.command}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
