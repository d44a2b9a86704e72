"""``scssl.tl.transfer_labels``: annotate query cells from a labelled reference."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
import pandas as pd
from anndata import AnnData

from scssl.data import DEFAULT_MIN_OVERLAP
from scssl.data._warnings import warn_user
from scssl.model import (
    CLASSIFIER_ENCODER_KWARGS,
    DEFAULT_PRETRAIN_TIME,
    TRANSFER_LABELS_KEY,
    ZERO_SHOT_ENCODER_KWARGS,
    finetune_classifier,
    pretrain_encoder,
    query_positions,
    reference_labels,
    reference_positions,
)
from scssl.model._label_transfer import check_cell_types, rare_types_named_once

from ._knn import EXACT_SEARCH_MAX_CELLS, Metric, Weights, check_voting, knn_vote
from ._uns import tool_params

logger = logging.getLogger(__name__)

UNKNOWN = "Unknown"
Method = Literal["knn", "classifier"]
METHODS: tuple[str, ...] = get_args(Method)
#: Least share of query cells on which a classifier trained by ``transfer_labels`` and zero-shot
#: kNN on its pretrained embedding should agree; below it kNN's labels are written instead
#: (``knn_fallback``). Measured with the workflow's pretraining (no centering) and
#: ``pretext_weight=3``: 0.84-0.99 wherever the classifier worked (every fold of pbmc_3tech, both
#: 500-gene panels, both directions across Kang and pbmc_3tech), 0.77 where it failed across the
#: studies (macro F1 0.67, kNN 0.85). With ``finetuned_share=0.7`` it failed there in both seeds
#: (0.71, 0.70; agreement 0.63, 0.54). With batch-centred pretraining and weight 1: 0.90-0.99
#: within the studies, 0.34 where the classifier collapsed (0.41; kNN 0.89).
MIN_KNN_AGREEMENT = 0.8
#: The vote that replaces a classifier failing the kNN check: ``k=5``, uniform, cosine. On the
#: workflow's encoders the cosine distance scored 0.84 on average over the six tasks of
#: ``benchmarks/batch_centering.py`` against 0.81 for the Euclidean (pbmc_3tech -> Kang 0.84
#: against 0.68), and 0.84 against 0.85 in the failed run.
FALLBACK_VOTING = MappingProxyType({"k": 5, "weights": "uniform", "metric": "cosine"})


def transfer_labels(
    query: AnnData,
    reference: AnnData | None,
    *,
    labels_key: str,
    model=None,
    use_rep: str | None = None,
    method: Method = "knn",
    k: int = 5,
    weights: Weights = "uniform",
    metric: Metric = "euclidean",
    key_added: str | None = None,
    min_confidence: float | None = None,
    exact_max_cells: int = EXACT_SEARCH_MAX_CELLS,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    batch_key: str | None = None,
    layer: str | None = None,
    pretrain_time: str | None = DEFAULT_PRETRAIN_TIME,
    knn_fallback: bool = True,
    seed: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Annotate query cells from a labelled reference, with a confidence per cell.

    ``method="knn"`` (zero-shot): the label that wins the vote of a cell's ``k`` nearest
    reference cells, with the winning share as confidence. ``method="classifier"``: an
    :class:`scssl.model.SSLClassifier`'s labels and calibrated probabilities. The reference is
    never modified. Genes are aligned to a model's vocabulary (Ensembl ID or symbol).

    Parameters
    ----------
    query, reference, labels_key
        Cells to annotate; labelled cells (``None`` only with a trained classifier as
        ``model``); the column of ``reference.obs`` with the labels (cells without one do not
        vote).
    model
        ``"knn"``: a trained :class:`scssl.model.SSLEncoder` (or classifier) to embed both
        datasets, unless ``use_rep`` is given; ``None`` (and no ``use_rep``): one pretrained
        on both by :func:`scssl.model.pretrain_encoder`. ``"classifier"``: an
        ``SSLClassifier``, or ``None``: one trained by :func:`scssl.model.train_classifier`
        (the best-measured workflow, see *Label transfer*).
    use_rep, method
        ``"knn"``: key of ``.obsm`` with an embedding of both datasets, used instead of
        ``model``; ``"knn"`` or ``"classifier"``.
    k, weights, metric
        ``"knn"``: neighbours that vote; ``"uniform"`` or ``"distance"`` (1/distance) weighted
        votes; ``"euclidean"`` or ``"cosine"`` distance.
    key_added, min_confidence
        Prefix of the columns written; cells of lower confidence are labelled ``"Unknown"``.
    exact_max_cells, min_overlap
        Larger references use an approximate pynndescent index; smallest share of the model's
        genes that must be found in each dataset.
    batch_key, layer, pretrain_time, seed, knn_fallback
        Training here (see ``model``; unused with ``use_rep`` or a model, which reads the layer
        and batch column it was set up with, as the one trained here does): each cell's batch,
        a column of both ``obs`` (``None``: reference and query); both's layer of raw counts
        (``None``: ``.X``); the pretraining time (``None``: the epoch heuristic alone, repeatable
        by seed on one machine); the seed; for a classifier, write kNN's labels (cosine, k=5)
        if it agrees with kNN on under 80% of cells.
    copy
        Return an annotated copy of ``query`` instead of writing into it.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Sets (``key_added`` or ``labels_key``):

    ``query.obs[f"{key_added}_pred"]``
        Predicted label (categorical; ``"Unknown"`` below ``min_confidence``).
    ``query.obs[f"{key_added}_confidence"]``
        Share of the (weighted) neighbour vote, or the calibrated probability, of the label.
    ``query.uns[f"{key_added}_pred"]``
        ``params`` (and the training's); ``k`` and ``search`` (``"exact"``, ``"pynndescent"``)
        of a kNN vote; ``share_unknown``, the share of cells marked ``"Unknown"``; a classifier
        trained here: ``knn_agreement`` (with zero-shot kNN; warning below 0.8), ``labels_from``
        (``"classifier"``, or ``"knn"`` after the fallback).

    """
    voting = {"k": k, "weights": weights, "metric": metric, "exact_max_cells": exact_max_cells}
    params = _checked_params(model, labels_key, use_rep, method, voting, key_added, min_confidence)
    if model is None and (method == "classifier" or use_rep is None):
        training = (batch_key, layer, pretrain_time, knn_fallback, seed)
        result = _train_and_predict(method, query, reference, labels_key, training, voting, params)
    elif method == "knn":
        result = _vote(query, reference, labels_key, model, use_rep, voting, min_overlap)
    else:
        result = _classify(query, model, min_overlap)
    query = query.copy() if copy else query
    _write(query, key_added or labels_key, result, min_confidence, params)
    return query if copy else None


def _train_and_predict(method, query, reference, labels_key, training, voting, params: dict):
    """Predictions of a model trained here on reference + query (``model=None``).

    ``"knn"``: the vote in the embedding of an encoder of :func:`scssl.model.pretrain_encoder`
    (its defaults: batch centering, per-gene weights of the reconstruction error).
    ``"classifier"``: an SSLClassifier trained as :func:`scssl.model.train_classifier` does;
    the report adds its agreement with zero-shot kNN on the pretrained embedding (the study's
    vote: ``k=5``, uniform, Euclidean) and, when the agreement is below ``MIN_KNN_AGREEMENT``
    and ``knn_fallback``, the labels are the ``FALLBACK_VOTING`` vote's. ``training``:
    ``(batch_key, layer, pretrain_time, knn_fallback, seed)``; ``voting``: options of
    ``knn_vote``.
    ``params`` record the training.
    """
    reuse = "model= or use_rep= (an embedding)" if method == "knn" else "model= (a classifier)"
    if reference is None:
        raise ValueError(
            f'method="{method}" needs a labelled reference to train on, or {reuse} to reuse.'
        )
    batch_key, layer, pretrain_time, knn_fallback, seed = training
    classifier = method == "classifier"
    if classifier:  # before the pretraining
        check_cell_types(reference, labels_key, classifier=True)
    logger.info(
        "Pretraining an SSLEncoder on reference + query for at most %s; pass %s to reuse one.",
        pretrain_time or "the epoch heuristic's epochs",
        reuse,
    )
    encoder_kwargs = dict(CLASSIFIER_ENCODER_KWARGS if classifier else ZERO_SHOT_ENCODER_KWARGS)
    encoder = pretrain_encoder(
        reference,
        query,
        labels_key,
        batch_key=batch_key,
        layer=layer,
        pretrain_time=pretrain_time,
        seed=seed,
        encoder_kwargs=encoder_kwargs,
    )
    params.update(
        batch_key=batch_key,
        layer=layer,
        pretrain_time=pretrain_time,
        seed=seed,
        encoder_kwargs=encoder_kwargs,
    )
    latent = encoder.get_latent_representation()
    if method == "knn":
        params["model"] = "SSLEncoder (trained by pretrain_encoder)"
        return _vote_result(_zero_shot_vote(encoder, latent, **voting))
    exact_max_cells = voting["exact_max_cells"]
    zero_shot = _zero_shot_vote(encoder, latent, exact_max_cells=exact_max_cells).predicted
    with rare_types_named_once():
        model = finetune_classifier(encoder, seed=seed)
    params.update(model="SSLClassifier (trained by train_classifier)", knn_fallback=knn_fallback)
    predicted, confidence, classes, report = _classify(
        query, model, positions=query_positions(model)
    )
    agreement = check_knn_agreement(predicted, zero_shot, knn_fallback)
    labels_from = "classifier"
    if knn_fallback and agreement < MIN_KNN_AGREEMENT:
        fallback = _zero_shot_vote(
            encoder, latent, exact_max_cells=exact_max_cells, **FALLBACK_VOTING
        )
        predicted, confidence, classes, report = _vote_result(fallback)
        labels_from = "knn"
    report.update(knn_agreement=agreement, labels_from=labels_from)
    return predicted, confidence, classes, report


def _zero_shot_vote(encoder, latent: np.ndarray, k: int = 5, **voting):
    """The query cells' kNN vote of the labelled reference cells, in an encoder's embedding.

    The encoder comes from ``pretrain_encoder`` and ``latent`` is its embedding of its cells;
    ``voting``: further options of ``knn_vote``.
    """
    labels = encoder.adata.obs[TRANSFER_LABELS_KEY].astype(str).to_numpy()
    reference_cells = reference_positions(encoder)
    _check_k(k, len(reference_cells))
    return knn_vote(
        latent[reference_cells],
        labels[reference_cells],
        latent[query_positions(encoder)],
        k=k,
        **voting,
    )


def check_knn_agreement(
    classifier_labels: np.ndarray, knn_labels: np.ndarray, knn_fallback: bool = False
) -> float:
    """Share of query cells on which the classifier and zero-shot kNN agree.

    Below ``MIN_KNN_AGREEMENT`` (0.8) a warning says the classifier is likely extrapolating and,
    with ``knn_fallback``, that kNN's labels are written instead.
    """
    agreement = float(np.mean(np.asarray(classifier_labels) == np.asarray(knn_labels)))
    if agreement < MIN_KNN_AGREEMENT:
        written = (
            f"Zero-shot kNN's labels ({FALLBACK_VOTING['metric']} distance, "
            f"k={FALLBACK_VOTING['k']}) are written instead (uns[...]['labels_from'] == 'knn'; "
            "knn_fallback=False keeps the classifier's). "
            if knn_fallback
            else ""
        )
        warn_user(
            f"The fine-tuned classifier agrees with zero-shot kNN on the pretrained embedding "
            f"for only {agreement:.0%} of the query cells (84-99% wherever the classifier "
            "worked in our benchmarks, also with another study as the reference). The query "
            "probably lies away from the reference in the embedding, where a linear classifier "
            f"extrapolates and can be confidently wrong. {written}Vote with kNN on an encoder "
            "pretrained with batch centering: transfer_labels(query, reference, "
            "labels_key=..., method='knn') without model= does it (see 'When the reference is "
            "another study' in the docs), and check the labels against marker genes.",
        )
    return agreement


def _checked_params(model, labels_key, use_rep, method, voting, key_added, min_confidence):
    """The ``params`` of the call, after checking the options.

    ``voting``: options of ``knn_vote``.
    """
    k, weights, metric = voting["k"], voting["weights"], voting["metric"]
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {list(METHODS)}.")
    check_voting(weights, metric)
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}.")
    return tool_params(
        model,
        method=method,
        labels_key=labels_key,
        key_added=key_added,
        min_confidence=min_confidence,
        use_rep=use_rep,
        **({"k": int(k), "weights": weights, "metric": metric} if method == "knn" else {}),
    )


def _classify(query: AnnData, model, min_overlap: float = DEFAULT_MIN_OVERLAP, positions=None):
    """Labels and calibrated probabilities of a trained SSLClassifier.

    ``positions``: the query's cells among those the model was trained on (then predicted as
    registered, each in its training batch).
    """
    if not hasattr(model, "class_names_"):
        raise ValueError('method="classifier" needs model= a trained SSLClassifier.')
    if positions is None:
        probabilities = model.predict(query, soft=True, min_overlap=min_overlap).to_numpy()
    else:
        probabilities = model.predict(indices=positions, soft=True).to_numpy()
    classes = np.asarray(model.class_names_, dtype=object)
    winner = probabilities.argmax(axis=1)
    return classes[winner], probabilities[np.arange(len(winner)), winner], classes, {}


def _vote(query, reference, labels_key, model, use_rep, voting, min_overlap):
    """The kNN vote of the labelled reference cells, in the model's (or use_rep's) embedding.

    ``voting``: options of ``knn_vote``.
    """
    labels = _reference_labels(reference, labels_key)
    labelled = labels.notna().to_numpy()
    ref_embedding = _embedding(reference, model, use_rep, "reference", min_overlap)
    query_embedding = _embedding(query, model, use_rep, "query", min_overlap)
    if ref_embedding.shape[1] != query_embedding.shape[1]:
        raise ValueError(
            f"The reference embedding has {ref_embedding.shape[1]} dimensions and the "
            f"query's {query_embedding.shape[1]}; embed both with the same model."
        )
    _check_k(voting["k"], int(labelled.sum()))
    vote = knn_vote(ref_embedding[labelled], labels.to_numpy()[labelled], query_embedding, **voting)
    return _vote_result(vote)


def _vote_result(vote):
    """A kNN vote as ``transfer_labels`` writes it: labels, confidences, classes, report."""
    return vote.predicted, vote.confidence, vote.classes, {"k": vote.k, "search": vote.search}


def _check_k(k: int, n_labelled: int) -> None:
    """Warn that ``k`` will be clamped to the labelled reference cells (``knn_vote`` does it)."""
    if k > n_labelled:
        warn_user(
            f"k={k} exceeds the {n_labelled} labelled reference cells; using k={n_labelled}.",
        )


def _reference_labels(reference: AnnData | None, labels_key: str) -> pd.Series:
    if reference is None:
        raise ValueError('method="knn" needs a labelled reference AnnData.')
    return reference_labels(reference, labels_key)


def _embedding(adata: AnnData, model, use_rep: str | None, role: str, min_overlap: float):
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"use_rep={use_rep!r} is not in the {role}'s .obsm (keys: {list(adata.obsm)}). "
                "Compute it first (e.g. scssl.tl.embed), pass model= instead, or leave out "
                "model= and use_rep= to pretrain an encoder on both datasets."
            )
        return np.asarray(adata.obsm[use_rep], dtype=np.float32)
    aligned, _ = model.align(adata, min_overlap=min_overlap)
    return model.get_latent_representation(aligned)


def _write(query, key, result, min_confidence, params) -> None:
    """Write ``obs[f"{key}_pred"]`` (categorical), ``obs[f"{key}_confidence"]`` and ``uns``.

    ``result``: predicted labels, confidences, classes and the report for ``uns``.
    """
    predicted, confidence, classes, report = result
    categories = [str(c) for c in classes]
    if min_confidence is not None:
        predicted = np.where(confidence < min_confidence, UNKNOWN, predicted)
        if UNKNOWN not in categories:
            categories.append(UNKNOWN)
    share_unknown = float(np.mean(predicted == UNKNOWN)) if len(predicted) else 0.0
    query.obs[f"{key}_pred"] = pd.Categorical(predicted, categories=categories)
    query.obs[f"{key}_confidence"] = np.asarray(confidence).astype(np.float32)
    query.uns[f"{key}_pred"] = {"params": params, **report, "share_unknown": share_unknown}
    logger.info("Labels of %d query cells written to obs[%r].", query.n_obs, f"{key}_pred")
