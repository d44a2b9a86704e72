"""Plots of scssl results (matplotlib, scanpy conventions: ``ax``, ``show``, ``save``)."""

from ._classification import confusion_matrix, per_class_f1

__all__ = ["confusion_matrix", "per_class_f1"]
