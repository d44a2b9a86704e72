"""Metrics and baselines for benchmarking scssl against the tools users would pick instead."""

from . import metrics, tasks
from ._baselines import (
    highly_variable_genes,
    log_normalize,
    logistic_regression_transfer,
    pca_embedding,
    scanvi_model,
    scvi_embedding,
    scvi_model,
)
from ._knn import knn_transfer
from ._protein_baselines import ridge_protein_prediction, totalvi_protein_prediction
from ._registry import (
    MUDATA_TASKS,
    TASK_METHODS,
    TASK_OPTIONS,
    TASK_REQUIRES,
    TASKS,
    TaskOption,
    register_task,
    unregister_task,
)
from ._report import markdown_report, markdown_table, write_report
from ._result import BenchmarkResult, load_results
from ._runner import run_benchmark
from .metrics import (
    accuracy,
    bootstrap_macro_f1,
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
    "MUDATA_TASKS",
    "TASKS",
    "TASK_METHODS",
    "TASK_OPTIONS",
    "TASK_REQUIRES",
    "BenchmarkResult",
    "TaskOption",
    "accuracy",
    "bootstrap_macro_f1",
    "expected_calibration_error",
    "highly_variable_genes",
    "knn_transfer",
    "load_results",
    "log_normalize",
    "logistic_regression_transfer",
    "macro_f1",
    "markdown_report",
    "markdown_table",
    "mean_squared_error",
    "metrics",
    "pca_embedding",
    "pearson_flattened",
    "pearson_per_cell",
    "pearson_per_protein",
    "per_class_f1",
    "protein_prediction_scores",
    "register_task",
    "ridge_protein_prediction",
    "run_benchmark",
    "scanvi_model",
    "scvi_embedding",
    "scvi_model",
    "spearman_flattened",
    "spearman_per_protein",
    "tasks",
    "totalvi_protein_prediction",
    "unregister_task",
    "weighted_explained_variance",
    "write_report",
]
