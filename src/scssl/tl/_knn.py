"""The k-nearest-neighbour vote, the one kNN label transfer of scssl.

:func:`scssl.tl.transfer_labels` and the benchmarks (:func:`scssl.benchmark.knn_transfer`) use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Weights = Literal["uniform", "distance"]
WEIGHTS: tuple[str, ...] = get_args(Weights)
Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = get_args(Metric)
#: References with more cells are searched with an approximate (pynndescent) index.
EXACT_SEARCH_MAX_CELLS = 50_000


@dataclass
class KnnVote:
    """Outcome of :func:`knn_vote`.

    Attributes
    ----------
    predicted
        Winning label of each query cell.
    confidence
        The winner's share of the (weighted) vote.
    classes
        The reference labels, sorted; the columns of ``scores``.
    scores
        Share of the vote of every class, cells x classes (rows sum to 1).
    k
        Neighbours that voted.
    search
        ``"exact"``, ``"pynndescent"`` or ``"none"`` (no query cell).

    """

    predicted: np.ndarray
    confidence: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    k: int
    search: str


def nearest_neighbors(
    reference: np.ndarray,
    query: np.ndarray,
    k: int,
    exact_max_cells: int | None = EXACT_SEARCH_MAX_CELLS,
    random_state: int = 0,
    metric: Metric = "euclidean",
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices and distances of the ``k`` nearest reference cells of each query cell.

    Exact search (scikit-learn) for references up to ``exact_max_cells`` cells (``None``: always),
    approximate search with a pynndescent index above (a reference of millions of cells fits).
    ``metric="cosine"`` searches the unit-length rows (the same order as cosine similarity) and
    returns cosine distances, ``1 - cos`` (an all-zero row, which has no direction, lies at 0.5
    from every other cell).
    """
    check_metric(metric)
    if metric == "cosine":
        neighbors, distances, search = nearest_neighbors(
            _unit_rows(reference), _unit_rows(query), k, exact_max_cells, random_state
        )
        return neighbors, distances**2 / 2, search
    if exact_max_cells is None or len(reference) <= exact_max_cells:
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


def check_metric(metric: str) -> None:
    """Raise a clear error for a distance the kNN vote does not know."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; choose one of {list(METRICS)}.")


def check_voting(weights: str, metric: str) -> None:
    """Raise a clear error for vote weights or a distance the kNN vote does not know."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}; choose one of {list(WEIGHTS)}.")
    check_metric(metric)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), in float32 or float64."""
    x = np.asarray(x)
    x = x.astype(np.float64) if x.dtype not in (np.float32, np.float64) else x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12).astype(x.dtype)


def knn_vote(
    reference: np.ndarray,
    labels,
    query: np.ndarray,
    *,
    k: int = 5,
    weights: Weights = "uniform",
    metric: Metric = "euclidean",
    exact_max_cells: int | None = EXACT_SEARCH_MAX_CELLS,
    random_state: int = 0,
) -> KnnVote:
    """Label each query cell by the vote of its ``k`` nearest reference cells.

    ``weights="uniform"``: one vote per neighbour (majority vote); ``"distance"``: votes weighted
    by ``1 / distance``. ``metric``: ``"euclidean"`` or ``"cosine"`` (the angle between cells,
    blind to each embedding's length). Ties go to the label that sorts first. ``k`` is at most
    the number of reference cells.
    """
    check_voting(weights, metric)
    labels = np.asarray(labels).astype(str)
    if len(labels) != len(reference):
        raise ValueError(f"{len(labels)} labels for {len(reference)} reference cells.")
    k = min(k, len(labels))
    classes, codes = np.unique(labels, return_inverse=True)
    n_query = len(query)
    if n_query == 0:
        neighbors = np.zeros((0, k), dtype=np.int64)
        distances = np.zeros((0, k))
        search = "none"
    else:
        neighbors, distances, search = nearest_neighbors(
            reference, query, k, exact_max_cells, random_state, metric
        )
    vote = 1.0 / np.maximum(distances, 1e-12) if weights == "distance" else np.ones_like(distances)
    scores = np.zeros((n_query, len(classes)))
    np.add.at(scores, (np.repeat(np.arange(n_query), k), codes[neighbors].ravel()), vote.ravel())
    scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-300)
    winner = scores.argmax(axis=1)
    return KnnVote(
        predicted=classes[winner],
        confidence=scores[np.arange(n_query), winner],
        classes=classes,
        scores=scores,
        k=int(k),
        search=search,
    )
