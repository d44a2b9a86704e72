"""Scanpy-style tools: functions that add scssl results to an AnnData."""

from ._embed import embed

__all__ = ["embed"]
