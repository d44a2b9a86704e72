"""The ``scssl`` command: ``demo``, ``pretrain``, ``embed`` and ``benchmark``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scssl.module._ssl_module import PRETEXTS


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc
    import scvi

    import scssl
    from scssl.benchmark import accuracy, knn_transfer, macro_f1, pca_embedding

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed
    adata = scssl.datasets.kang_ifnb_pbmc_demo()
    print(f"[1/4] Kang PBMC demo data: {adata.n_obs} cells x {adata.n_vars} genes (raw counts)")

    scssl.model.SSLEncoder.setup_anndata(adata)
    model = scssl.model.SSLEncoder(adata, pretext="random_mask")
    print(f"[2/4] Pretraining SSLEncoder (random masking) for up to {args.max_epochs} epochs")
    start = time.perf_counter()
    # Small data: smaller minibatches give the masked autoencoder enough optimisation steps.
    model.train(max_epochs=args.max_epochs, batch_size=64, early_stopping=True)
    print(f"      trained in {time.perf_counter() - start:.0f} s")
    model.save(out / "model", overwrite=True)

    print("[3/4] Embedding and kNN label transfer CTRL -> STIM (k=5)")
    scssl.tl.embed(adata, model)
    reference = (adata.obs["stim"] == "CTRL").to_numpy()
    truth = adata.obs["cell_type"].to_numpy()[~reference]
    rows = []
    for name, embedding in [
        ("scssl SSLEncoder", adata.obsm["X_scssl"]),
        ("PCA-50 (2,000 HVGs)", pca_embedding(adata, seed=args.seed)),
    ]:
        predicted, _ = knn_transfer(
            embedding[reference],
            adata.obs["cell_type"].to_numpy()[reference],
            embedding[~reference],
        )
        rows.append((name, macro_f1(truth, predicted), accuracy(truth, predicted)))
    print(f"      {'method':<22}{'macro F1':>10}{'accuracy':>10}")
    for name, f1, acc in rows:
        print(f"      {name:<22}{f1:>10.3f}{acc:>10.3f}")

    print("[4/4] UMAP of the scssl embedding")
    sc.pp.neighbors(adata, use_rep="X_scssl")
    sc.tl.umap(adata, random_state=args.seed)
    figure = sc.pl.umap(adata, color=["cell_type", "stim"], show=False, return_fig=True)
    figure.savefig(out / "umap_scssl.png", dpi=120, bbox_inches="tight")
    print(f"Done: model in {out / 'model'}, UMAP in {out / 'umap_scssl.png'}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    import anndata as ad
    import scvi

    import scssl

    scvi.settings.seed = args.seed
    adata = ad.read_h5ad(args.input)
    scssl.model.SSLEncoder.setup_anndata(
        adata, layer=args.layer, batch_key=args.batch_key, log_normalized=args.log_normalized
    )
    model = scssl.model.SSLEncoder(
        adata,
        pretext=args.pretext,
        gene_sets=args.gene_sets,
        likelihood=args.likelihood,
        n_latent=args.n_latent,
        mask_rate=args.mask_rate,
        batch_centering=not args.no_batch_centering,
        batch_adversary_weight=args.batch_adversary_weight,
    )
    model.train(max_epochs=args.max_epochs, batch_size=args.batch_size)
    model.save(args.out, overwrite=args.overwrite)
    print(f"Saved the pretrained model to {args.out}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import anndata as ad

    import scssl

    adata = ad.read_h5ad(args.input)
    model = scssl.model.SSLEncoder.load_query_data(adata, args.model, min_overlap=args.min_overlap)
    scssl.tl.embed(adata, model, key_added=args.key_added, min_overlap=args.min_overlap)
    adata.write_h5ad(args.output)
    alignment = adata.uns["scssl"]["alignment"]
    print(
        f"Embedded {adata.n_obs} cells ({alignment['n_matched']} of {alignment['n_vocabulary']} "
        f"model genes matched) into obsm[{args.key_added!r}] of {args.output}"
    )
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from scssl.benchmark import run_benchmark

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    task_kwargs = {}
    if args.task == "label_transfer":
        task_kwargs = {"reference_key": args.reference_key, "reference_value": args.reference_value}
    if args.task == "integration":
        task_kwargs.update(n_top_genes=args.n_top_genes, scssl_epochs=args.scssl_epochs)
    elif args.scssl_epochs is not None or args.n_top_genes is not None:
        raise ValueError("--scssl-epochs and --n-top-genes apply to the integration task.")
    if args.task == "protein":
        task_kwargs.update(rna_mod=args.rna_mod, protein_mod=args.protein_mod)
    if args.held_out is not None:
        if args.task not in ("reconstruction", "protein"):
            raise ValueError("--held-out applies to the reconstruction and protein tasks.")
        task_kwargs["held_out"] = args.held_out
    scssl_kwargs = {
        name: value
        for name, value in (
            ("pretext", args.pretext),
            ("n_latent", args.n_latent),
            ("batch_adversary_weight", args.batch_adversary_weight),
        )
        if value is not None
    }
    if "batch_adversary_weight" in scssl_kwargs and args.task != "integration":
        raise ValueError("--batch-adversary-weight applies to the integration task.")
    if scssl_kwargs:
        task_kwargs["scssl_kwargs"] = scssl_kwargs
    result = run_benchmark(
        args.data,
        task=args.task,
        out=args.out,
        batch_key=args.batch_key,
        label_key=args.label_key,
        methods=args.methods,
        epochs=args.epochs,
        max_cells=args.max_cells,
        layer=args.layer,
        seed=args.seed,
        plots=not args.no_plots,
        **task_kwargs,
    )
    from scssl.benchmark import markdown_table

    print(markdown_table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scssl`` command."""
    parser = argparse.ArgumentParser(
        prog="scssl", description="Self-supervised learning for single-cell omics."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="pretrain on shipped Kang PBMCs, embed, transfer labels, UMAP (a few minutes)",
    )
    demo.add_argument("--out", default="scssl_demo", help="output folder (model, UMAP PNG)")
    demo.add_argument("--max-epochs", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

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

    embed = commands.add_parser("embed", help="embed an .h5ad file with a saved model")
    embed.add_argument("--model", required=True, help="folder of a saved SSLEncoder")
    embed.add_argument("--input", required=True)
    embed.add_argument("--output", required=True)
    embed.add_argument("--key-added", default="X_scssl")
    embed.add_argument("--min-overlap", type=float, default=0.5)
    embed.set_defaults(func=_embed)

    from scssl.benchmark._tasks import TASK_METHODS

    methods = sorted({m for known in TASK_METHODS.values() for m in known})
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
    bench.add_argument("--label-key", default=None, help="obs column of cell types")
    bench.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=methods,
        help="methods to run (default: all of the task)",
    )
    bench.add_argument("--epochs", type=int, default=None, help="epochs of the neural methods")
    bench.add_argument(
        "--scssl-epochs",
        type=int,
        default=None,
        help="integration: epochs of scssl alone (baselines keep --epochs or their defaults)",
    )
    bench.add_argument("--max-cells", type=int, default=None, help="subsample to this many cells")
    bench.add_argument("--layer", default=None, help="layer with counts (default: X)")
    bench.add_argument(
        "--reference-key",
        default=None,
        help="label_transfer: obs column marking the reference (default: leave one batch out)",
    )
    bench.add_argument("--reference-value", default=None, help="value of --reference-key")
    bench.add_argument(
        "--n-top-genes",
        type=int,
        default=None,
        help="integration: every method on these many batch-aware HVGs (default: all genes)",
    )
    bench.add_argument(
        "--held-out",
        type=float,
        default=None,
        help="reconstruction, protein: share of cells held out (default 0.1, 0.2)",
    )
    bench.add_argument("--rna-mod", default="rna", help="protein: RNA modality of the MuData")
    bench.add_argument(
        "--protein-mod", default=None, help="protein: protein modality (default: prot/protein/adt)"
    )
    bench.add_argument("--pretext", default=None, choices=PRETEXTS, help="scssl pretext")
    bench.add_argument("--n-latent", type=int, default=None, help="scssl latent size")
    bench.add_argument(
        "--batch-adversary-weight",
        type=float,
        default=None,
        help="integration: batch adversary weight of scssl_adversarial (default 0.3)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument("--no-plots", action="store_true")
    bench.set_defaults(func=_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scssl`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, ConnectionError) as error:
        print(f"scssl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
