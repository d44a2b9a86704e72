"""Zero-shot label transfer by k nearest neighbours in an embedding."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier


def knn_transfer(
    reference: np.ndarray, labels, query: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Label each query cell by majority vote of its ``k`` nearest reference cells (Euclidean).

    Returns
    -------
    Predicted labels and the share of the ``k`` neighbours that voted for them.

    """
    labels = np.asarray(labels).astype(str)
    classifier = KNeighborsClassifier(n_neighbors=k, weights="uniform").fit(reference, labels)
    probabilities = classifier.predict_proba(query)
    winner = probabilities.argmax(axis=1)
    return classifier.classes_[winner], probabilities[np.arange(len(winner)), winner]
