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
from ._protein_baselines import ridge_protein_prediction, totalvi_protein_prediction
from .metrics import (
    accuracy,
    expected_calibration_error,
    macro_f1,
    mean_squared_error,
    pearson_flattened,
    pearson_per_cell,
    pearson_per_protein,
    per_class_f1,
    protein_prediction_scores,
    spearman_flattened,
    spearman_per_protein,
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
    "pearson_flattened",
    "pearson_per_cell",
    "pearson_per_protein",
    "per_class_f1",
    "protein_prediction_scores",
    "ridge_protein_prediction",
    "scvi_embedding",
    "spearman_flattened",
    "spearman_per_protein",
    "totalvi_protein_prediction",
    "weighted_explained_variance",
]
