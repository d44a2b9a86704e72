"""LabelledMixSampler: the semi-supervised minibatches of SSLClassifier's fine-tuning."""

import numpy as np
import pytest

from scssl.data import LabelledMixSampler


def test_an_epoch_passes_over_the_labelled_cells_and_draws_from_all():
    labelled = np.arange(0, 1000, 2)  # 500 labelled cells of 1,000
    sampler = LabelledMixSampler(1000, labelled, batch_size=50, min_steps=1, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    first_halves = np.concatenate([b[:50] for b in batches])
    assert sorted(first_halves) == sorted(labelled)  # each labelled cell once
    second_halves = np.concatenate([b[50:] for b in batches])
    assert second_halves.min() >= 0 and second_halves.max() < 1000
    assert len(np.unique(second_halves)) > 300  # drawn from all cells, not the labelled
    assert [b.tolist() for b in LabelledMixSampler(1000, labelled, 50, 1, seed=3)] == [
        b.tolist() for b in batches
    ]


@pytest.mark.parametrize(
    ("n_obs", "n_labelled", "steps"),
    [
        (12_689, 5_238, 41),  # Kang CTRL -> STIM: the labelled pass is the longer one
        (1_019, 729, 10),  # a pbmc_3tech fold: at least 10 steps
        (14_270, 959, 38),  # pbmc_3tech -> Kang: a third of all cells sets the length
        (3 * 1_280, 100, 10),  # a third of 3,840 is 1,280 cells, exactly 10 steps, not 11
    ],
)
def test_epoch_length(n_obs, n_labelled, steps):
    sampler = LabelledMixSampler(n_obs, np.arange(n_labelled), batch_size=128)
    assert len(sampler) == steps
    assert sum(len(b) for b in sampler) == steps * 256


def test_a_small_reference_leaves_no_query_undrawn():
    """Each epoch draws at least a third of all cells (in expectation) from all of them."""
    sampler = LabelledMixSampler(30_000, np.arange(300), batch_size=100, min_steps=10)
    drawn = np.concatenate([b[100:] for b in sampler])
    assert len(drawn) >= 10_000
    assert len(np.unique(drawn)) > 8_000


def test_no_labelled_cells_is_an_error():
    with pytest.raises(ValueError, match="needs labelled cells"):
        LabelledMixSampler(100, np.array([], dtype=int), batch_size=10)
