"""The label-transfer workflow: pretrain on reference and query, then fine-tune semi-supervised.

Measured on Kang (control -> stimulated) and pbmc_3tech (leave one chemistry out); each step's
gain is on the *Label transfer* docs page.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

import anndata as ad
import numpy as np
import pandas as pd
import scvi

from scssl.data import (
    check_expression_matrix,
    check_obs_column,
    check_unique_var_names,
    expression_matrix,
    highly_variable_genes,
    warn_rare_labels,
)
from scssl.data._vocabulary import DEFAULT_MIN_OVERLAP
from scssl.data._warnings import warn_user
from scssl.module._ssl_module import MASKED_PRETEXTS

from ._classifier_sources import DEFAULT_UNLABELED
from ._ssl_classifier import SSLClassifier
from ._ssl_encoder import SSLEncoder

#: Pretraining time of the workflow (Lightning's ``max_time``): 10 minutes.
DEFAULT_PRETRAIN_TIME = "00:00:10:00"
#: Genes the workflow keeps: the most variable ones (batch-aware), as chosen on Kang.
DEFAULT_N_TOP_GENES = 2000
LABELS, BATCH = "_scssl_labels", "_scssl_batch"
#: SSLEncoder options of the classifier workflow's pretraining, over the encoder's defaults: no
#: batch centering. Within a study the classifier scored the same without it (Kang, pbmc_3tech);
#: with another study as the reference, centering shifted one study's cell types against the
#: other's and the fine-tuned classifier collapsed in one of two seeds (macro F1 0.41; 0.89
#: without). Without it the classifier can still fail across studies on some encoders (0.67 in
#: one seed of a rerun; the kNN-agreement check flagged it). Zero-shot kNN keeps centering
#: (:func:`pretrain_encoder`'s default), which helped it. ``"uniform"`` overrides
#: ``ZERO_SHOT_ENCODER_KWARGS`` inside :func:`pretrain_encoder`: the classifier keeps the study's
#: reconstruction loss.
CLASSIFIER_ENCODER_KWARGS = MappingProxyType(
    {"batch_centering": False, "reconstruction_gene_weights": "uniform"}
)
#: SSLEncoder options of zero-shot kNN's pretraining (:func:`pretrain_encoder`), over the
#: encoder's defaults, for masked pretexts with the squared error: the reconstruction error of
#: each gene weighted by the inverse of its standard deviation. Chosen on pbmc_3tech and Kang
#: (see the *Label transfer* docs): it lifted kNN on both, and cost the fine-tuned classifier on
#: pbmc_3tech. With ``likelihood="nb"`` it lowered kNN on pbmc_3tech, so it does not apply.
ZERO_SHOT_ENCODER_KWARGS = MappingProxyType({"reconstruction_gene_weights": "inverse_sd"})
#: How to hand the workflow raw counts, for the messages of its checks.
COUNTS_HINT = (
    "put the raw counts in {where}, or name the layer of the reference and the query that "
    "holds them (layer='counts')"
)


def reference_labels(reference: ad.AnnData, labels_key: str) -> pd.Series:
    """The reference's labels, ``NaN`` for its cells without one (with a warning).

    Raises a clear error when ``labels_key`` is not a column or no cell has a label.
    """
    if labels_key not in reference.obs:
        raise KeyError(
            f"labels_key={labels_key!r} is not a column of reference.obs (columns: "
            f"{list(reference.obs.columns)})."
        )
    labels = reference.obs[labels_key]
    missing = labels.isna().to_numpy()
    if missing.all():
        raise ValueError(f"reference.obs[{labels_key!r}] has no labelled cell.")
    if missing.any():
        warn_user(
            f"{int(missing.sum())} reference cells have no label (NaN in "
            f"reference.obs[{labels_key!r}]); they are treated as unlabelled cells.",
        )
    check_cell_types(reference, labels_key, classifier=False)
    return labels


def check_cell_types(reference: ad.AnnData, labels_key: str, *, classifier: bool) -> None:
    """Two labelled cell types at least in ``reference.obs[labels_key]`` (``"Unknown"`` is none).

    A classifier needs them (raises before any training) and learns a type of fewer than three
    labelled cells from those alone (warns, naming them); a kNN vote with one type gives every
    query cell that label (warns). A missing column is :func:`reference_labels`' error.
    """
    if labels_key not in reference.obs:
        return
    labels = reference.obs[labels_key]
    types = [t for t in labels.dropna().unique() if str(t) != DEFAULT_UNLABELED]
    if len(types) >= 2:
        if classifier:
            warn_rare_labels(reference, labels_key, DEFAULT_UNLABELED, where="reference")
        return
    if not types and not classifier:
        return
    if not types:
        raise ValueError(f"reference.obs[{labels_key!r}] has no labelled cell.")
    named = f"reference.obs[{labels_key!r}] has one cell type ({str(types[0])!r})"
    if classifier:
        raise ValueError(
            f"{named}; a classifier needs at least two. Label the reference cells of other "
            "types, or choose a reference that has them."
        )
    warn_user(f"{named}: every query cell gets that label.")


def transfer_data(
    reference: ad.AnnData,
    query: ad.AnnData | None,
    labels_key: str,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
) -> ad.AnnData:
    """Reference and query cells in one AnnData of counts on their shared genes.

    The counts are where the datasets hold them (``.X``, or ``layers[layer]`` with ``.X``
    empty), and each cell's batch is in ``obs[batch_key]``, or in ``obs["_scssl_batch"]``
    (``"reference"`` and ``"query"``) when ``batch_key`` is ``None``: a model set up on it reads
    the user's datasets alike. ``obs["_scssl_labels"]`` holds the reference labels (the
    query's, and reference cells without a label, are unlabeled). Each dataset's counts on the
    shared genes are checked, naming it; of a repeated gene name the first column is read (with
    a warning). The inputs are not modified.
    """
    labels = reference_labels(reference, labels_key)
    parts = {"reference": reference} if query is None else {"reference": reference, "query": query}
    for name, part in parts.items():
        check_obs_column(part, batch_key, "batch_key", where=name)
        check_unique_var_names(part.var_names, where=f"{name}.var_names")
    shared = _shared_genes(parts)
    pieces = {}
    for name, part in parts.items():
        first = np.flatnonzero(~part.var_names.duplicated())  # of a repeated name, its first
        view = part[:, first[part.var_names[first].get_indexer(shared)]]  # one index: backed ok
        matrix = expression_matrix(view, layer, where=name)
        where = f"{name}.X" if layer is None else f"{name}.layers[{layer!r}]"
        check_expression_matrix(matrix, where=where, counts_hint=COUNTS_HINT, log_hint=None)
        obs = pd.DataFrame(index=part.obs_names.astype(str))
        reference_part = name == "reference"
        obs[LABELS] = (
            labels.astype(object).where(labels.notna(), DEFAULT_UNLABELED).astype(str).to_numpy()
            if reference_part
            else DEFAULT_UNLABELED
        )
        obs[batch_column(batch_key)] = (
            name if batch_key is None else part.obs[batch_key].astype(str).to_numpy()
        )
        pieces[name] = ad.AnnData(
            X=matrix if layer is None else None,
            obs=obs,
            var=pd.DataFrame(index=shared),
            layers=None if layer is None else {layer: matrix},
        )
    combined = ad.concat(pieces, index_unique="-" if query is not None else None)
    combined.obs[LABELS] = combined.obs[LABELS].astype("category")
    return combined


def batch_column(batch_key: str | None) -> str:
    """The column of :func:`transfer_data`'s batches: the user's ``batch_key``, or ``BATCH``.

    ``BATCH`` too for the names of the labels column and of scvi-tools' own columns.
    """
    reserved = (LABELS, "_scvi_batch", "_scvi_labels")
    return BATCH if batch_key is None or batch_key in reserved else batch_key


def _shared_genes(parts: dict[str, ad.AnnData]) -> pd.Index:
    """The genes of every part.

    An error when there are none, a warning when they are fewer than ``DEFAULT_MIN_OVERLAP`` of
    the smaller part's.
    """
    shared = parts["reference"].var_names.unique()
    for part in parts.values():
        shared = shared.intersection(part.var_names.unique(), sort=False)
    if len(shared) == 0:
        raise ValueError(
            "The reference and the query share no gene names; give both the same kind of gene "
            "identifiers (symbols or Ensembl IDs) in var_names."
        )
    smallest = min(part.var_names.nunique() for part in parts.values())
    if len(shared) < DEFAULT_MIN_OVERLAP * smallest:
        warn_user(
            f"The reference and the query share {len(shared)} genes, fewer than "
            f"{DEFAULT_MIN_OVERLAP:.0%} of the smaller one's {smallest}: scssl trains on the "
            "shared genes only. Check that both name genes alike (symbols or Ensembl IDs)."
        )
    return shared


def train_classifier(
    reference: ad.AnnData,
    query: ad.AnnData | None,
    labels_key: str,
    *,
    seed: int = 0,
    encoder_kwargs: dict | None = None,
    classifier_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    **pretrain_options,
) -> SSLClassifier:
    """Pretrain an SSL encoder on reference and query cells, then fine-tune it on the labels.

    1. Reference and query cells, on their shared genes, in one AnnData (see
       :func:`transfer_data`); the ``n_top_genes`` most variable genes (raw counts, batch-aware).
    2. An :class:`SSLEncoder` (random masking, the batch registered but not centred:
       ``CLASSIFIER_ENCODER_KWARGS``) pretrained on all of them, without labels, for at most
       ``pretrain_time`` and scvi-tools' epoch heuristic (400 epochs up to 20,000 cells, fewer
       for more; no early stopping).
    3. An :class:`SSLClassifier` from it, fine-tuned on the reference labels with the pretext
       on every cell and a batch adversary (:meth:`SSLClassifier.train`'s defaults).

    Steps 1 and 2 are :func:`pretrain_encoder`, step 3 :func:`finetune_classifier`.

    Parameters
    ----------
    reference
        Labelled cells, raw counts in ``.X`` or ``layer``.
    query
        Cells to annotate (their labels, if any, are never read); ``None``: reference only.
    labels_key
        Column of ``reference.obs`` with the cell types.
    seed
        Seed of every step.
    encoder_kwargs
        Options of :class:`SSLEncoder`, over ``CLASSIFIER_ENCODER_KWARGS``
        (``{"batch_centering": True}`` centres each batch as the encoder's default does).
    classifier_kwargs, train_kwargs
        Options of :meth:`SSLClassifier.from_encoder` and :meth:`SSLClassifier.train`.
    **pretrain_options
        Options of :func:`pretrain_encoder`: ``batch_key``, ``layer``, ``n_top_genes``,
        ``pretrain_time``, ``pretrain_epochs``.

    Returns
    -------
    The trained classifier; ``model.adata`` holds the cells it was trained on (the query's
    ``obs_names`` with a ``-query`` suffix when a query is given).

    """
    check_cell_types(reference, labels_key, classifier=True)  # before the pretraining
    encoder = pretrain_encoder(
        reference,
        query,
        labels_key,
        seed=seed,
        encoder_kwargs={**CLASSIFIER_ENCODER_KWARGS, **(encoder_kwargs or {})},
        **pretrain_options,
    )
    with rare_types_named_once():
        return finetune_classifier(
            encoder, seed=seed, classifier_kwargs=classifier_kwargs, train_kwargs=train_kwargs
        )


@contextmanager
def rare_types_named_once() -> Iterator[None]:
    """Silence the rare-types warning of the workflow's internal labels column.

    :func:`check_cell_types` named those types in the user's column before the pretraining.
    """
    with warnings.catch_warnings():
        pattern = rf".*\[{re.escape(repr(LABELS))}\] has cell types with fewer"
        warnings.filterwarnings("ignore", message=pattern)
        yield


def finetune_classifier(
    encoder: SSLEncoder,
    *,
    seed: int = 0,
    classifier_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
) -> SSLClassifier:
    """Step 3 of :func:`train_classifier`: fine-tune a classifier from a pretrained encoder.

    The encoder comes from :func:`pretrain_encoder`; the reference labels train the classifier,
    the query cells stay unlabelled.
    """
    scvi.settings.seed = seed
    classifier = SSLClassifier.from_encoder(
        encoder, encoder.adata, LABELS, **(classifier_kwargs or {})
    )
    classifier.train(seed=seed, enable_progress_bar=False, **(train_kwargs or {}))
    return classifier


def pretrain_encoder(
    reference: ad.AnnData,
    query: ad.AnnData | None,
    labels_key: str,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
    n_top_genes: int | None = DEFAULT_N_TOP_GENES,
    pretrain_time: str | None = DEFAULT_PRETRAIN_TIME,
    pretrain_epochs: int | None = None,
    seed: int = 0,
    encoder_kwargs: dict | None = None,
) -> SSLEncoder:
    """Steps 1 and 2 of :func:`train_classifier`: an encoder pretrained on reference + query.

    With the encoder's defaults (batch centering) and ``ZERO_SHOT_ENCODER_KWARGS`` (per-gene
    weights of the reconstruction error) it is the encoder of zero-shot kNN;
    :func:`train_classifier` passes ``CLASSIFIER_ENCODER_KWARGS``, which override them. Its
    ``adata`` holds the cells and genes it was trained on, with the reference labels in
    ``obs[scssl.model.TRANSFER_LABELS_KEY]`` (the query's unlabeled), the batches in
    ``obs[batch_key]`` (``obs["_scssl_batch"]`` without one) and the counts in ``layer``, so
    that it embeds the user's datasets as they are: ready for
    :meth:`SSLClassifier.from_encoder`, whose classifier takes over the encoder's options, the
    per-gene weights included (pass ``encoder_kwargs=dict(CLASSIFIER_ENCODER_KWARGS)`` for the
    workflow's encoder).

    Parameters
    ----------
    reference, query, labels_key
        As for :func:`train_classifier`.
    batch_key
        Column of both ``obs`` with each cell's batch; ``None``: reference and query are the
        batches.
    layer
        Layer with the counts; ``None`` for ``.X``.
    n_top_genes
        Genes kept; ``None`` keeps all.
    pretrain_time, pretrain_epochs
        Bounds of the pretraining: Lightning's ``max_time`` (``"DD:HH:MM:SS"``) and epochs
        (``None``: scvi-tools' heuristic, 400 up to 20,000 cells; small datasets pretrained
        for the whole time budget did worse, see the *Label transfer* docs).
    seed
        Seed of the pretraining.
    encoder_kwargs
        Options of :class:`SSLEncoder`, over ``ZERO_SHOT_ENCODER_KWARGS`` (masked pretexts with
        the squared error) and the encoder's defaults (``{"reconstruction_gene_weights":
        "uniform"}``: the study's loss).

    """
    combined = transfer_data(reference, query, labels_key, batch_key=batch_key, layer=layer)
    batches = batch_column(batch_key)
    if n_top_genes is not None and combined.n_vars > n_top_genes:
        keep = highly_variable_genes(combined, n_top_genes, batch_key=batches, layer=layer)
        combined = combined[:, keep].copy()
    scvi.settings.seed = seed
    n_batches = combined.obs[batches].nunique()
    SSLEncoder.setup_anndata(combined, layer=layer, batch_key=batches if n_batches > 1 else None)
    encoder = SSLEncoder(combined, **zero_shot_options(encoder_kwargs))
    encoder.train(
        max_epochs=pretrain_epochs,
        max_time=pretrain_time,
        early_stopping=False,
        enable_progress_bar=False,
    )
    return encoder


def zero_shot_options(encoder_kwargs: dict | None) -> dict:
    """``encoder_kwargs`` over ``ZERO_SHOT_ENCODER_KWARGS`` (masked pretexts, squared error)."""
    options = dict(encoder_kwargs or {})
    masked = options.get("pretext", "random_mask") in MASKED_PRETEXTS
    if masked and options.get("likelihood", "mse") == "mse":
        options = {**ZERO_SHOT_ENCODER_KWARGS, **options}
    return options


def reference_positions(model: SSLClassifier | SSLEncoder) -> np.ndarray:
    """Positions of the labelled reference cells in a model of :func:`train_classifier`.

    Also for an encoder of :func:`pretrain_encoder`.
    """
    labels = model.adata.obs[LABELS].astype(str).to_numpy()
    names = model.adata.obs_names.astype(str)
    reference = names.str.endswith("-reference") if names.str.endswith("-query").any() else True
    return np.flatnonzero((labels != DEFAULT_UNLABELED) & reference)


def query_positions(model: SSLClassifier | SSLEncoder) -> np.ndarray:
    """Positions of the query cells in a model of :func:`train_classifier`.

    Also for an encoder of :func:`pretrain_encoder`.
    """
    labels = model.adata.obs[LABELS].astype(str).to_numpy()
    names = model.adata.obs_names.astype(str)
    return np.flatnonzero((labels == DEFAULT_UNLABELED) & names.str.endswith("-query"))
