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
