"""The one kNN vote (scssl.tl._knn) against scikit-learn's classifier, which it replaced."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from scssl.benchmark import knn_transfer
from scssl.tl._knn import knn_vote, nearest_neighbors


@pytest.mark.parametrize("k", [1, 4, 5, 15])
def test_uniform_vote_equals_kneighbors_classifier(k):
    """Labels and confidences as KNeighborsClassifier gave (ties included): the benchmark
    scores computed before the vote was shared reproduce."""
    rng = np.random.default_rng(k)
    reference = rng.normal(size=(300, 6)).astype(np.float32)
    labels = rng.choice(["b", "a", "c", "d"], size=300)
    query = rng.normal(size=(120, 6)).astype(np.float32)
    classifier = KNeighborsClassifier(n_neighbors=k, weights="uniform").fit(reference, labels)
    probabilities = classifier.predict_proba(query)
    winner = probabilities.argmax(axis=1)
    predicted, confidence = knn_transfer(reference, labels, query, k=k)
    np.testing.assert_array_equal(predicted, classifier.classes_[winner])
    np.testing.assert_array_equal(confidence, probabilities[np.arange(len(winner)), winner])


def test_vote_details_and_errors():
    reference = np.array([[0.0], [1.0], [10.0]])
    vote = knn_vote(reference, ["x", "x", "y"], np.array([[0.2], [9.0]]), k=2, weights="distance")
    assert list(vote.predicted) == ["x", "y"] and vote.k == 2 and vote.search == "exact"
    np.testing.assert_allclose(vote.scores.sum(axis=1), 1.0)
    assert vote.confidence[0] == 1.0 and 0.5 < vote.confidence[1] < 1.0
    empty = knn_vote(reference, ["x", "x", "y"], np.zeros((0, 1)), k=5)
    assert empty.predicted.shape == (0,) and empty.k == 3 and empty.search == "none"
    with pytest.raises(ValueError, match="weights"):
        knn_vote(reference, ["x", "x", "y"], reference, weights="gaussian")
    with pytest.raises(ValueError, match="2 labels for 3 reference cells"):
        knn_vote(reference, ["x", "y"], reference)


def test_cosine_metric_ignores_length_and_returns_cosine_distances():
    """Cells on the same ray vote together whatever their length (depth-like scale)."""
    # a short x along the first axis, a long y on the diagonal: the metrics disagree
    two = np.array([[1.0, 0.0], [5.0, 5.0]])
    between = np.array([[0.8, 0.5]])
    assert list(knn_vote(two, ["x", "y"], between, k=1).predicted) == ["x"]
    assert list(knn_vote(two, ["x", "y"], between, k=1, metric="cosine").predicted) == ["y"]
    # distance-weighted cosine vote with k > 1: the closer angle outweighs two farther cells
    reference = np.array([[1.0, 0.05], [0.0, 3.0], [0.1, 8.0]])
    query = np.array([[20.0, 0.0]])
    uniform = knn_vote(reference, ["x", "y", "y"], query, k=3, metric="cosine")
    weighted = knn_vote(reference, ["x", "y", "y"], query, k=3, metric="cosine", weights="distance")
    assert list(uniform.predicted) == ["y"] and list(weighted.predicted) == ["x"]
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 5)).astype(np.float32)
    query = rng.normal(size=(40, 5)).astype(np.float32)
    neighbors, distances, _ = nearest_neighbors(reference, query, 4, metric="cosine")
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    cosine = q @ unit.T
    np.testing.assert_array_equal(np.sort(neighbors, 1), np.sort(np.argsort(-cosine, 1)[:, :4], 1))
    expected = 1 - np.take_along_axis(cosine, neighbors, 1)
    np.testing.assert_allclose(distances, expected, atol=1e-5)
    approx, _, search = nearest_neighbors(reference, query, 4, exact_max_cells=100, metric="cosine")
    assert search == "pynndescent"
    recall = np.mean([len(set(a) & set(e)) / 4 for a, e in zip(approx, neighbors, strict=True)])
    assert recall > 0.95
    # an all-zero cell has no direction: it lies at 0.5 from every other cell, and is no crash
    zero = nearest_neighbors(reference, np.zeros((1, 5)), 2, metric="cosine")[1]
    np.testing.assert_allclose(zero, 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="metric"):
        knn_vote(reference, ["x"] * 300, query, metric="manhattan")
