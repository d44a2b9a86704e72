"""Plots of scssl results."""

from ._benchmark import benchmark_scores

__all__ = ["benchmark_scores"]
