"""``scssl.tl.transfer_labels``: annotate query cells from a labelled reference."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from scssl._version import __version__
from scssl.data import DEFAULT_MIN_OVERLAP

logger = logging.getLogger(__name__)

UNKNOWN = "Unknown"
EXACT_SEARCH_MAX_CELLS = 50_000
METHODS = ("knn", "classifier")


def _embedding(adata: AnnData, model, use_rep: str | None, role: str, min_overlap: float):
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"use_rep={use_rep!r} is not in the {role}'s .obsm (keys: {list(adata.obsm)}). "
                "Compute it first (e.g. scssl.tl.embed) or pass model= instead."
            )
        return np.asarray(adata.obsm[use_rep], dtype=np.float32)
    aligned, _ = model.align(adata, min_overlap=min_overlap)
    return model.get_latent_representation(aligned)


def nearest_neighbors(
    reference: np.ndarray,
    query: np.ndarray,
    k: int,
    exact_max_cells: int = EXACT_SEARCH_MAX_CELLS,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices and Euclidean distances of the ``k`` nearest reference cells of each query cell.

    Exact search (scikit-learn) for references up to ``exact_max_cells`` cells, approximate
    search with a pynndescent index above (a reference of millions of cells fits).
    """
    if len(reference) <= exact_max_cells:
        from sklearn.neighbors import NearestNeighbors

        index = NearestNeighbors(n_neighbors=k).fit(reference)
        distances, neighbors = index.kneighbors(query)
        return neighbors, distances, "exact"
    from pynndescent import NNDescent

    index = NNDescent(
        reference, n_neighbors=max(15, k), metric="euclidean", random_state=random_state
    )
    neighbors, distances = index.query(query, k=k)
    return neighbors, distances, "pynndescent"


def transfer_labels(
    query: AnnData,
    reference: AnnData | None,
    labels_key: str,
    model=None,
    use_rep: str | None = None,
    method: str = "knn",
    k: int = 5,
    weights: str = "uniform",
    key_added: str | None = None,
    min_confidence: float | None = None,
    exact_max_cells: int = EXACT_SEARCH_MAX_CELLS,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    copy: bool = False,
) -> AnnData | None:
    """Annotate query cells from a labelled reference, with a confidence per cell.

    ``method="knn"`` (zero-shot): both datasets are embedded with ``model`` (or their
    ``.obsm[use_rep]`` is reused); each query cell takes the label that wins the vote of its
    ``k`` nearest reference cells, and the winning share of the vote as confidence.
    ``method="classifier"``: the labels and calibrated probabilities of a trained
    :class:`scssl.model.SSLClassifier` (``reference`` is not needed).

    The reference is never modified. Genes are aligned to the model's vocabulary (Ensembl ID or
    symbol; missing genes zero-filled), so query and reference may have different gene panels.

    Parameters
    ----------
    query
        Cells to annotate.
    reference
        Labelled cells (``reference.obs[labels_key]``); cells with a missing label are ignored.
    labels_key
        Column of ``reference.obs`` with the labels.
    model
        A trained :class:`scssl.model.SSLEncoder` (or :class:`scssl.model.SSLClassifier`) to embed
        both datasets; required unless ``use_rep`` is given (for ``"knn"``), and must be an
        ``SSLClassifier`` for ``"classifier"``.
    use_rep
        Key of ``.obsm`` holding an embedding computed for both datasets; used instead of
        ``model``.
    method
        ``"knn"`` or ``"classifier"``.
    k
        Number of neighbours.
    weights
        ``"uniform"`` (majority vote) or ``"distance"`` (votes weighted by ``1 / distance``).
    key_added
        Prefix of the columns written; default ``labels_key``.
    min_confidence
        Cells whose confidence is below this get the label ``"Unknown"``.
    exact_max_cells
        References with more cells use an approximate pynndescent index instead of exact search.
    min_overlap
        Smallest share of the model's genes that must be found in each dataset.
    copy
        Return an annotated copy of ``query`` instead of writing into it.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Sets:

    ``query.obs[f"{key_added}_pred"]``
        Predicted label (categorical; ``"Unknown"`` below ``min_confidence``).
    ``query.obs[f"{key_added}_confidence"]``
        Share of the (weighted) neighbour vote, or the calibrated probability, of the label.
    ``query.uns["scssl"]["transfer_labels"][key_added]``
        The parameters of the call and the share of cells marked ``"Unknown"``.

    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {list(METHODS)}.")
    if weights not in ("uniform", "distance"):
        raise ValueError(f"weights={weights!r}; choose 'uniform' or 'distance'.")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}.")
    key = key_added or labels_key
    params = {
        "method": method,
        "labels_key": labels_key,
        "min_confidence": min_confidence,
        "model": None if model is None else type(model).__name__,
        "use_rep": use_rep,
        "scssl_version": __version__,
    }

    if method == "classifier":
        if model is None or not hasattr(model, "class_names_"):
            raise ValueError('method="classifier" needs model= a trained SSLClassifier.')
        probabilities = model.predict(query, soft=True, min_overlap=min_overlap).to_numpy()
        classes = np.asarray(model.class_names_, dtype=object)
        winner = probabilities.argmax(axis=1)
        predicted = classes[winner]
        confidence = probabilities[np.arange(len(winner)), winner]
    else:
        if reference is None:
            raise ValueError('method="knn" needs a labelled reference AnnData.')
        if labels_key not in reference.obs:
            raise KeyError(
                f"labels_key={labels_key!r} is not a column of reference.obs (columns: "
                f"{list(reference.obs.columns)})."
            )
        if model is None and use_rep is None:
            raise ValueError("Pass model= (to embed both datasets) or use_rep= (an .obsm key).")
        labels = reference.obs[labels_key]
        labelled = labels.notna().to_numpy()
        if not labelled.any():
            raise ValueError(f"reference.obs[{labels_key!r}] has no labelled cell.")
        if not labelled.all():
            warnings.warn(
                f"{int((~labelled).sum())} reference cells without a label are ignored.",
                UserWarning,
                stacklevel=2,
            )
        ref_embedding = _embedding(reference, model, use_rep, "reference", min_overlap)
        query_embedding = _embedding(query, model, use_rep, "query", min_overlap)
        if ref_embedding.shape[1] != query_embedding.shape[1]:
            raise ValueError(
                f"The reference embedding has {ref_embedding.shape[1]} dimensions and the "
                f"query's {query_embedding.shape[1]}; embed both with the same model."
            )
        ref_embedding = ref_embedding[labelled]
        ref_labels = labels.to_numpy()[labelled].astype(str)
        k_used = min(k, len(ref_labels))
        if k_used < k:
            warnings.warn(
                f"k={k} exceeds the {len(ref_labels)} labelled reference cells; using k={k_used}.",
                UserWarning,
                stacklevel=2,
            )
        classes, codes = np.unique(ref_labels, return_inverse=True)
        if query.n_obs == 0:
            neighbors = np.zeros((0, k_used), dtype=np.int64)
            distances = np.zeros((0, k_used))
            search = "none"
        else:
            neighbors, distances, search = nearest_neighbors(
                ref_embedding, query_embedding, k_used, exact_max_cells
            )
        if weights == "distance":
            vote = 1.0 / np.maximum(distances, 1e-12)
        else:
            vote = np.ones_like(distances)
        scores = np.zeros((query.n_obs, len(classes)))
        np.add.at(
            scores,
            (np.repeat(np.arange(query.n_obs), k_used), codes[neighbors].ravel()),
            vote.ravel(),
        )
        scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-300)
        winner = scores.argmax(axis=1)
        predicted = classes[winner].astype(object)
        confidence = scores[np.arange(query.n_obs), winner]
        params.update(k=int(k_used), weights=weights, search=search)

    categories = [str(c) for c in classes]
    if min_confidence is not None:
        predicted = np.where(confidence < min_confidence, UNKNOWN, predicted)
        if UNKNOWN not in categories:
            categories.append(UNKNOWN)
    params["share_unknown"] = float(np.mean(predicted == UNKNOWN)) if len(predicted) else 0.0

    query = query.copy() if copy else query
    query.obs[f"{key}_pred"] = pd.Categorical(predicted, categories=categories)
    query.obs[f"{key}_confidence"] = confidence.astype(np.float32)
    uns = query.uns.setdefault("scssl", {})
    uns.setdefault("transfer_labels", {})[key] = params
    logger.info(
        "Labels of %d query cells written to obs[%r] (%s).", query.n_obs, f"{key}_pred", method
    )
    return query if copy else None
