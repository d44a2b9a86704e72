"""scssl.pl.benchmark_scores: a figure from a BenchmarkResult or its dict, clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import scssl
from scssl.benchmark import BenchmarkResult


@pytest.fixture
def result() -> BenchmarkResult:
    return BenchmarkResult(
        task="label_transfer",
        dataset="toy",
        rows=[
            {"method": "scssl", "name": "scssl kNN", "macro_f1": 0.8, "accuracy": 0.9},
            {"method": "pca", "macro_f1": 0.7, "accuracy": None},
        ],
        metrics=["macro_f1", "accuracy"],
        primary="macro_f1",
    )


def _bars(figure: Figure) -> list[float]:
    return [patch.get_height() for patch in figure.axes[0].patches]


def test_draws_a_figure_from_a_result_and_from_its_dict(result):
    figure = scssl.pl.benchmark_scores(result)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_title() == "label_transfer on toy"
    # one group per metric, labelled as in the reports; one bar per method, named
    assert [t.get_text() for t in ax.get_xticklabels()] == ["macro F1", "accuracy"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["scssl kNN", "pca"]
    heights = _bars(figure)
    assert heights[:2] == [0.8, 0.9] and heights[2] == 0.7 and np.isnan(heights[3])
    from_dict = scssl.pl.benchmark_scores(result.to_dict(), metrics=["accuracy"], title="t")
    assert from_dict.axes[0].get_title() == "t"
    assert [t.get_text() for t in from_dict.axes[0].get_xticklabels()] == ["accuracy"]
    plt.close("all")


def test_draws_into_given_axes(result):
    figure, ax = plt.subplots()
    assert scssl.pl.benchmark_scores(result, ax=ax) is figure
    assert len(ax.patches) == 4
    plt.close("all")


def test_clear_errors(result):
    with pytest.raises(ValueError, match=r"Metrics \['ari'\] are not in the result"):
        scssl.pl.benchmark_scores(result, metrics=["macro_f1", "ari"])
    empty = result.to_dict()
    empty["rows"] = []
    with pytest.raises(ValueError, match="no rows to plot"):
        scssl.pl.benchmark_scores(empty)
    no_metrics = result.to_dict()
    no_metrics["metrics"] = []
    with pytest.raises(ValueError, match="No metrics to plot"):
        scssl.pl.benchmark_scores(no_metrics)
    with pytest.raises(TypeError, match="BenchmarkResult or its dict"):
        scssl.pl.benchmark_scores([result])
