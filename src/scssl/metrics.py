"""Scores of scssl's tasks: label transfer, calibration, reconstruction, protein prediction.

Protein prediction (RNA -> protein) is scored on ``log1p`` protein counts as in the study:
Pearson's r over all entries (flattened), per protein and per cell, Spearman's rho, and the mean
squared error. There ``y_true`` and ``y_pred`` are cells x proteins (arrays or DataFrames;
DataFrames are matched by cell and protein names).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import sparse, stats
from sklearn.metrics import accuracy_score, f1_score

from scssl.data._warnings import warn_user


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``y_true``."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro"))


def _stratified_resamples(y_true, n_resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Cell indices of ``n_resamples`` bootstrap resamples stratified by label.

    Each resample draws, with replacement, as many cells of each label as ``y_true`` has, so
    every label keeps its count: a label of one or two cells is never dropped from a resample,
    which would change which labels a macro average runs over.
    """
    labels = np.asarray(y_true).astype(str)
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield np.concatenate([rng.choice(cells, len(cells)) for cells in members])


def bootstrap_macro_f1(
    y_true, predictions: Mapping[str, ArrayLike], n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Macro F1 of each prediction on the same bootstrap resamples of the cells.

    Each resample draws, with replacement, as many cells of each true label as ``y_true`` has
    (stratified: a label of one or two cells is never dropped from a resample), and every
    prediction is scored on the same cells of each resample, as :func:`macro_f1` scores it
    (over the true labels). The spread of a difference or ratio of two columns is the
    uncertainty of that comparison that comes from the finite set of cells scored; it is usually
    narrower than either column's own spread. It leaves out the spread between trainings
    (seeds): score each seed's predictions as a column of its own for that.

    Parameters
    ----------
    y_true
        True labels of the scored cells.
    predictions
        ``{name: predicted labels}``, each as long as ``y_true``.
    n_resamples, seed
        Number of resamples and the seed that draws them.

    Returns
    -------
    One row per resample, one column per key of ``predictions``.

    """
    y_true = np.asarray(y_true).astype(str)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true must be a non-empty 1-d array of labels, got {y_true.shape}.")
    classes, truth = np.unique(y_true, return_inverse=True)
    n, k = len(truth), len(classes)
    coded = {}
    for name, y_pred in predictions.items():
        y_pred = np.asarray(y_pred).astype(str)
        if y_pred.shape != (n,):
            raise ValueError(f"Prediction {name!r} has shape {y_pred.shape}; expected ({n},).")
        position = np.minimum(np.searchsorted(classes, y_pred), k - 1)
        coded[name] = np.where(classes[position] == y_pred, position, k)  # k: not a true class
    support = np.bincount(truth, minlength=k)  # the same in every stratified resample
    scores = {name: np.empty(n_resamples) for name in coded}
    for i, cells in enumerate(_stratified_resamples(y_true, n_resamples, seed)):
        for name, pred in coded.items():
            predicted = np.bincount(pred[cells], minlength=k + 1)[:k]
            hits = cells[truth[cells] == pred[cells]]
            true_positives = np.bincount(truth[hits], minlength=k)
            # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted)
            scores[name][i] = np.mean(2 * true_positives / (support + predicted))
    return pd.DataFrame(scores)


def accuracy(y_true, y_pred) -> float:
    """Share of cells whose prediction equals the truth."""
    return float(accuracy_score(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)))


def _dense(values) -> np.ndarray:
    values = values.toarray() if sparse.issparse(values) else np.asarray(values)
    return values.astype(np.float64, copy=False)


def weighted_explained_variance(y_true, y_pred) -> float:
    """Explained variance over genes, weighted by each gene's variance.

    ``1 - sum_g Var(y_true_g - y_pred_g) / sum_g Var(y_true_g)``: torchmetrics'
    ``ExplainedVariance(multioutput="variance_weighted")``, the study's reconstruction metric
    (on log1p-normalised expression). 1 is perfect; 0 is no better than each gene's mean.
    """
    y_true, y_pred = _dense(y_true), _dense(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: y_true {y_true.shape}, y_pred {y_pred.shape}.")
    total = y_true.var(axis=0).sum()
    if total == 0:
        raise ValueError("y_true has no variance; explained variance is undefined.")
    return float(1.0 - (y_true - y_pred).var(axis=0).sum() / total)


def mean_squared_error(y_true, y_pred) -> float:
    """Mean over all entries of the squared difference."""
    y_true, y_pred = _dense(y_true), _dense(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: y_true {y_true.shape}, y_pred {y_pred.shape}.")
    return float(np.mean((y_true - y_pred) ** 2))


# ---------------------------------------------------------------- protein prediction
def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(y_true, pd.DataFrame) and isinstance(y_pred, pd.DataFrame):
        missing = y_true.columns.difference(y_pred.columns)
        if len(missing):
            raise ValueError(f"y_pred lacks the columns {list(missing[:5])} of y_true.")
        if not y_true.index.equals(y_pred.index):
            if y_true.index.difference(y_pred.index).size:
                raise ValueError("y_true and y_pred hold different cells (index).")
            y_pred = y_pred.loc[y_true.index]
        y_pred = y_pred[y_true.columns]
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    true = true[:, None] if true.ndim == 1 else true
    pred = pred[:, None] if pred.ndim == 1 else pred
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape} but y_pred {pred.shape}.")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("y_true and y_pred must be finite (no NaN or infinite values).")
    return true, pred


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ``a`` with the same row of ``b`` (NaN for constant rows)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denominator
    return np.where(denominator > 0, r, np.nan)


def _nanmean(values: np.ndarray, what: str) -> float:
    n_nan = int(np.isnan(values).sum())
    if n_nan == len(values):
        return float("nan")
    if n_nan:
        warn_user(
            f"{n_nan} of {len(values)} {what} are constant in y_true or y_pred; their "
            "correlation is undefined and left out of the mean."
        )
    return float(np.nanmean(values))


def pearson_flattened(y_true, y_pred) -> float:
    """Pearson's r over all (cell, protein) entries at once.

    Includes the differences between proteins' overall levels, so it is higher than the
    per-protein mean; the study reports this number.
    """
    true, pred = _pair(y_true, y_pred)
    return float(_rowwise_pearson(true.reshape(1, -1), pred.reshape(1, -1))[0])


def pearson_per_protein(y_true, y_pred) -> np.ndarray:
    """Pearson's r across cells for each protein (column); NaN where a column is constant."""
    true, pred = _pair(y_true, y_pred)
    return _rowwise_pearson(true.T, pred.T)


def pearson_per_cell(y_true, y_pred) -> np.ndarray:
    """Pearson's r across proteins for each cell (row); NaN where a row is constant."""
    true, pred = _pair(y_true, y_pred)
    return _rowwise_pearson(true, pred)


def spearman_flattened(y_true, y_pred) -> float:
    """Spearman's rank correlation over all entries at once."""
    true, pred = _pair(y_true, y_pred)
    return float(stats.spearmanr(true.ravel(), pred.ravel()).statistic)


def spearman_per_protein(y_true, y_pred) -> np.ndarray:
    """Spearman's rank correlation across cells for each protein (column)."""
    true, pred = _pair(y_true, y_pred)
    true_ranks = stats.rankdata(true, axis=0)
    pred_ranks = stats.rankdata(pred, axis=0)
    return _rowwise_pearson(true_ranks.T, pred_ranks.T)


def protein_prediction_scores(y_true, y_pred, feature_names=None) -> dict:
    """All protein-prediction scores in one dictionary (plain floats, JSON-ready).

    Parameters
    ----------
    y_true, y_pred
        Cells x proteins, ``log1p`` counts.
    feature_names
        Protein names for ``per_protein``; taken from ``y_true``'s columns when it is a DataFrame.

    Returns
    -------
    ``pearson_flattened``, ``pearson_mean_per_protein``, ``pearson_mean_per_cell``,
    ``spearman_flattened``, ``spearman_mean_per_protein``, ``mse`` (mean squared error) and
    ``per_protein``
    (``{protein: {"pearson": r, "spearman": rho, "mse": e}}``).

    """
    if feature_names is None and isinstance(y_true, pd.DataFrame):
        feature_names = list(map(str, y_true.columns))
    true, pred = _pair(y_true, y_pred)
    if feature_names is None:
        feature_names = [str(i) for i in range(true.shape[1])]
    per_protein = pearson_per_protein(true, pred)
    per_protein_rho = spearman_per_protein(true, pred)
    per_protein_mse = np.mean((true - pred) ** 2, axis=0)
    return {
        "pearson_flattened": pearson_flattened(true, pred),
        "pearson_mean_per_protein": _nanmean(per_protein, "proteins"),
        "pearson_mean_per_cell": _nanmean(pearson_per_cell(true, pred), "cells"),
        "spearman_flattened": spearman_flattened(true, pred),
        "spearman_mean_per_protein": _nanmean(per_protein_rho, "proteins"),
        "mse": mean_squared_error(true, pred),
        "per_protein": {
            name: {"pearson": float(r), "spearman": float(rho), "mse": float(e)}
            for name, r, rho, e in zip(
                feature_names, per_protein, per_protein_rho, per_protein_mse, strict=True
            )
        },
    }


def per_class_f1(y_true, y_pred) -> dict[str, float]:
    """F1 of each class present in ``y_true``, sorted by class name."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    classes = np.unique(y_true)
    scores = f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0.0)
    return {str(c): float(s) for c, s in zip(classes, scores, strict=True)}


def expected_calibration_error(y_true, y_pred, confidence, n_bins: int = 15) -> float:
    """Expected calibration error of the predicted class's probability (Guo et al. 2017).

    Cells are binned by ``confidence`` into ``n_bins`` equal-width bins on [0, 1]; the ECE is
    the cell-weighted mean over bins of ``|accuracy - mean confidence|``. 0 is perfectly
    calibrated.
    """
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    confidence = np.asarray(confidence, dtype=np.float64)
    if not (len(y_true) == len(y_pred) == len(confidence)):
        raise ValueError(
            f"y_true, y_pred and confidence differ in length: {len(y_true)}, {len(y_pred)}, "
            f"{len(confidence)}."
        )
    if len(y_true) == 0:
        return float("nan")
    correct = (y_true == y_pred).astype(np.float64)
    bins = np.clip((confidence * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


__all__ = [
    "accuracy",
    "bootstrap_macro_f1",
    "expected_calibration_error",
    "macro_f1",
    "mean_squared_error",
    "pearson_flattened",
    "pearson_per_cell",
    "pearson_per_protein",
    "per_class_f1",
    "protein_prediction_scores",
    "spearman_flattened",
    "spearman_per_protein",
    "weighted_explained_variance",
]
