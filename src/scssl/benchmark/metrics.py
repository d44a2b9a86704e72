"""Scores for scssl's tasks: label transfer and reconstruction."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.metrics import accuracy_score, f1_score


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``y_true``."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro"))


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
