"""The one kNN vote (scssl.tl._knn) against scikit-learn's classifier, which it replaced."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from scssl.benchmark import knn_transfer
from scssl.tl._knn import knn_vote


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
