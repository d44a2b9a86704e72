"""Zero-shot label transfer by k nearest neighbours in an embedding, for the benchmarks."""

from __future__ import annotations

import numpy as np

from scssl.tl._knn import Metric, knn_vote


def knn_transfer(
    reference: np.ndarray, labels, query: np.ndarray, k: int = 5, metric: Metric = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Label each query cell by majority vote of its ``k`` nearest reference cells.

    The vote of :func:`scssl.tl.transfer_labels` (``weights="uniform"``, Euclidean or cosine
    ``metric``) on arrays, with exact search whatever the reference's size.

    Returns
    -------
    Predicted labels and the share of the ``k`` neighbours that voted for them.

    """
    vote = knn_vote(
        reference, labels, query, k=k, weights="uniform", metric=metric, exact_max_cells=None
    )
    return vote.predicted, vote.confidence
