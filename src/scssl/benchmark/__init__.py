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
from ._report import markdown_report, markdown_table, write_report
from ._tasks import (
    TASK_METHODS,
    TASKS,
    BenchmarkResult,
    load_results,
    register_task,
    run_benchmark,
)
from .metrics import accuracy, macro_f1, mean_squared_error, weighted_explained_variance

__all__ = [
    "TASKS",
    "TASK_METHODS",
    "BenchmarkResult",
    "accuracy",
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
    "register_task",
    "run_benchmark",
    "scvi_embedding",
    "weighted_explained_variance",
    "write_report",
]
