import numpy as np
import pytest

from scssl.benchmark import accuracy, bootstrap_macro_f1, knn_transfer, macro_f1, pca_embedding
from scssl.metrics import _stratified_resamples


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


def _noisy_labels(n=300, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.choice(list("abcd"), n, p=[0.4, 0.3, 0.2, 0.1])
    guess = np.where(rng.random(n) < 0.8, truth, rng.choice(list("abcdz"), n))
    truth[:2], guess[:2] = "rare", ["rare", "a"]  # a type of two cells, one found
    return truth, guess


def test_bootstrap_macro_f1_scores_each_resample_as_macro_f1():
    truth, guess = _noisy_labels()
    scores = bootstrap_macro_f1(truth, {"guess": guess, "truth": truth}, n_resamples=20, seed=3)
    assert scores.shape == (20, 2)
    draws = list(_stratified_resamples(truth, 20, seed=3))
    for cells in draws:  # stratified: every type keeps its count, the rare one too
        assert sorted(truth[cells]) == sorted(truth)
    expected = [macro_f1(truth[cells], guess[cells]) for cells in draws]
    np.testing.assert_allclose(scores["guess"], expected, atol=1e-12)
    assert scores["guess"].nunique() > 10
    assert (scores["truth"] == 1.0).all()
    again = bootstrap_macro_f1(truth, {"guess": guess}, n_resamples=20, seed=3)
    np.testing.assert_array_equal(again["guess"], scores["guess"])
    other_seed = bootstrap_macro_f1(truth, {"guess": guess}, n_resamples=20, seed=4)
    assert not np.array_equal(other_seed["guess"], scores["guess"])


def test_bootstrap_macro_f1_is_paired_and_checks_its_input():
    truth, guess = _noisy_labels()
    worse = guess.copy()
    worse[np.flatnonzero(guess == truth)[2:12]] = "z"  # ten right answers made wrong
    scores = bootstrap_macro_f1(truth, {"guess": guess, "worse": worse}, n_resamples=200)
    # On the same cells the worse prediction never scores higher, although its spread overlaps
    assert (scores["worse"] <= scores["guess"] + 1e-12).all()
    assert scores["worse"].max() > scores["guess"].min()
    with pytest.raises(ValueError, match=r"'short' has shape \(3,\); expected \(300,\)"):
        bootstrap_macro_f1(truth, {"short": guess[:3]})
    with pytest.raises(ValueError, match="shape"):
        bootstrap_macro_f1(truth, {"column": guess[:, None]})
    with pytest.raises(ValueError, match="non-empty 1-d"):
        bootstrap_macro_f1([], {"none": []})
