"""Metrics and baselines for benchmarking scssl against the tools users would pick instead."""

from . import metrics
from ._baselines import (
    highly_variable_genes,
    log_normalize,
    logistic_regression_transfer,
    pca_embedding,
    scvi_embedding,
)
from ._knn import knn_transfer
from .metrics import (
    accuracy,
    expected_calibration_error,
    macro_f1,
    mean_squared_error,
    per_class_f1,
    weighted_explained_variance,
)

__all__ = [
    "accuracy",
    "expected_calibration_error",
    "highly_variable_genes",
    "knn_transfer",
    "log_normalize",
    "logistic_regression_transfer",
    "macro_f1",
    "mean_squared_error",
    "metrics",
    "pca_embedding",
    "per_class_f1",
    "scvi_embedding",
    "weighted_explained_variance",
]
