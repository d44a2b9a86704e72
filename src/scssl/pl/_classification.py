"""Confusion matrix and per-class F1 of a cell-type annotation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from scssl.metrics import per_class_f1 as _per_class_f1_scores

Normalize = Literal["true", "pred"] | None
NORMALIZE = (*get_args(Literal["true", "pred"]), None)


def _obs(data: AnnData | pd.DataFrame) -> pd.DataFrame:
    if isinstance(data, AnnData):
        return data.obs
    if isinstance(data, pd.DataFrame):
        return data
    raise TypeError(f"Expected an AnnData or a DataFrame, got {type(data).__name__}.")


def _column(obs: pd.DataFrame, key: str) -> np.ndarray:
    if key not in obs:
        raise KeyError(f"{key!r} is not a column of obs (columns: {list(obs.columns)}).")
    return obs[key].astype(str).to_numpy()


def _finish(ax: Axes, show: bool | None, save: str | bool | None) -> Axes | None:
    figure = ax.figure
    if save:
        path = save if isinstance(save, str) else "scssl_plot.png"
        figure.savefig(path, dpi=150, bbox_inches="tight")
    if show is None:
        import scanpy as sc

        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return ax


def confusion_matrix(
    data: AnnData | pd.DataFrame,
    true_key: str,
    pred_key: str,
    normalize: Normalize = "true",
    ax: Axes | None = None,
    cmap: str = "Blues",
    annotate: bool = True,
    show: bool | None = None,
    save: str | bool | None = None,
) -> Axes | None:
    """Heatmap of true (rows) against predicted (columns) labels.

    Parameters
    ----------
    data
        AnnData (its ``.obs`` is read) or a DataFrame with both columns.
    true_key, pred_key
        Columns with the true and the predicted labels (e.g. ``"cell_type"`` and
        ``"cell_type_pred"`` from :func:`scssl.tl.transfer_labels`).
    normalize
        ``"true"``: each row sums to 1 (recall on the diagonal); ``"pred"``: each column sums
        to 1 (precision); ``None``: cell counts.
    ax
        Axes to draw into; a new figure otherwise.
    cmap
        Colour map.
    annotate
        Write the value in each square.
    show
        Show the figure; ``None`` follows ``scanpy.settings.autoshow``.
    save
        Path of a file to write the figure to (``True``: ``scssl_plot.png``).

    Returns
    -------
    The Axes when ``show`` is false, as scanpy's plotting functions do.

    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r}; choose one of {list(NORMALIZE)}.")
    obs = _obs(data)
    y_true, y_pred = _column(obs, true_key), _column(obs, pred_key)
    rows = sorted(set(y_true))
    columns = rows + sorted(set(y_pred) - set(rows))
    table = (
        pd.crosstab(
            pd.Categorical(y_true, categories=rows),
            pd.Categorical(y_pred, categories=columns),
            dropna=False,
        )
        .to_numpy()
        .astype(float)
    )
    if normalize == "true":
        table = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    elif normalize == "pred":
        table = table / np.maximum(table.sum(axis=0, keepdims=True), 1)
    if ax is None:
        size = 0.45 * max(len(columns), 4) + 2
        _, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(table, cmap=cmap, vmin=0, vmax=1 if normalize else None, aspect="auto")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(columns)), columns, rotation=90)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    if annotate:
        top = table.max() if table.size else 1
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                value = table[i, j]
                if value == 0:
                    continue
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                colour = "white" if value > 0.6 * top else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    return _finish(ax, show, save)


def per_class_f1(
    data: AnnData | pd.DataFrame,
    true_key: str,
    pred_keys: str | Sequence[str] | Mapping[str, str],
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | bool | None = None,
) -> Axes | None:
    """Bars of the F1 score of each true class, for one or several predictions.

    Parameters
    ----------
    data, true_key
        AnnData (its ``.obs`` is read) or a DataFrame, and its column with the true labels.
    pred_keys
        Column(s) with predictions; a mapping ``{legend name: column}`` names the methods.
    ax
        Axes to draw into; a new figure otherwise.
    show
        Show the figure; ``None`` follows ``scanpy.settings.autoshow``.
    save
        Path of a file to write the figure to.

    Returns
    -------
    The Axes when ``show`` is false. The legend gives each method's macro F1.

    """
    obs = _obs(data)
    if isinstance(pred_keys, str):
        pred_keys = {pred_keys: pred_keys}
    elif not isinstance(pred_keys, Mapping):
        pred_keys = {k: k for k in pred_keys}
    y_true = _column(obs, true_key)
    scores = {
        name: _per_class_f1_scores(y_true, _column(obs, key)) for name, key in pred_keys.items()
    }
    classes = sorted(set(y_true))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.6 * len(classes) + 2), 4))
    width = 0.8 / len(scores)
    positions = np.arange(len(classes))
    for i, (name, per_class) in enumerate(scores.items()):
        values = [per_class[c] for c in classes]
        ax.bar(
            positions + (i - (len(scores) - 1) / 2) * width,
            values,
            width,
            label=f"{name} (macro F1 {np.mean(values):.3f})",
        )
    ax.set_xticks(positions, classes, rotation=90)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-class F1 ({true_key})")
    ax.legend(fontsize=8, loc="lower left")
    return _finish(ax, show, save)
