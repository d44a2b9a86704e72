"""Plots of scssl results (matplotlib, scanpy conventions: ``ax``, ``show``, ``save``)."""

from ._benchmark import benchmark_scores
from ._classification import confusion_matrix, per_class_f1

__all__ = ["benchmark_scores", "confusion_matrix", "per_class_f1"]
