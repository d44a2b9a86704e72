import numpy as np

from scssl.benchmark import accuracy, knn_transfer, macro_f1, pca_embedding


def test_knn_transfer_votes_and_confidence():
    reference = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    labels = ["a", "a", "a", "b", "b", "b"]
    predicted, confidence = knn_transfer(reference, labels, np.array([[0.05], [10.05]]), k=3)
    assert list(predicted) == ["a", "b"]
    np.testing.assert_allclose(confidence, [1.0, 1.0])


def test_macro_f1_and_accuracy():
    truth = ["a", "a", "b", "b"]
    assert macro_f1(truth, ["a", "a", "b", "b"]) == 1.0
    assert accuracy(truth, ["a", "b", "b", "b"]) == 0.75
    assert abs(macro_f1(truth, ["a", "b", "b", "b"]) - np.mean([2 / 3, 0.8])) < 1e-12


def test_pca_baseline_on_real_cells(kang_demo):
    embedding = pca_embedding(kang_demo[:500].copy(), n_comps=20)
    assert embedding.shape == (500, 20)
