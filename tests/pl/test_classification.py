"""scssl.pl.confusion_matrix and scssl.pl.per_class_f1."""

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import scssl
from scssl.metrics import per_class_f1


def test_plots_return_axes_and_save(tmp_path):
    obs = pd.DataFrame(
        {
            "truth": list("aabbbc"),
            "pred": list("abbbca"),
            "other": list("aabbbc"),
        }
    )
    ax = scssl.pl.confusion_matrix(obs, "truth", "pred", show=False, save=str(tmp_path / "c.png"))
    assert isinstance(ax, Axes)
    assert (tmp_path / "c.png").stat().st_size > 0
    image = ax.images[0].get_array()
    np.testing.assert_allclose(np.asarray(image).sum(1), 1.0)  # rows normalised
    counts = scssl.pl.confusion_matrix(obs, "truth", "pred", normalize=None, show=False)
    assert np.asarray(counts.images[0].get_array()).sum() == 6
    adata = ad.AnnData(np.zeros((6, 1)), obs=obs)
    ax = scssl.pl.per_class_f1(adata, "truth", {"m1": "pred", "m2": "other"}, show=False)
    assert isinstance(ax, Axes)
    heights = [p.get_height() for p in ax.patches]
    assert heights[3:] == [1.0, 1.0, 1.0]  # the perfect method
    assert "macro F1 1.000" in ax.get_legend().get_texts()[1].get_text()
    with pytest.raises(KeyError, match="nope"):
        scssl.pl.per_class_f1(obs, "truth", "nope", show=False)
    with pytest.raises(ValueError, match="normalize"):
        scssl.pl.confusion_matrix(obs, "truth", "pred", normalize="all", show=False)


def test_per_class_f1_bars_are_the_metric():
    """The bars are scssl.metrics.per_class_f1, the one per-class F1 of the package."""
    obs = pd.DataFrame({"truth": list("aabbbcdd"), "pred": list("abbbcadd")})
    ax = scssl.pl.per_class_f1(obs, "truth", "pred", show=False)
    expected = per_class_f1(obs["truth"], obs["pred"])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(expected)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], list(expected.values()))
    macro = np.mean(list(expected.values()))
    assert f"macro F1 {macro:.3f}" in ax.get_legend().get_texts()[0].get_text()
