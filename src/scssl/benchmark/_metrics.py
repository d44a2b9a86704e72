"""Scores for scssl's tasks."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``y_true``."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro"))


def accuracy(y_true, y_pred) -> float:
    """Share of cells whose prediction equals the truth."""
    return float(accuracy_score(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)))
