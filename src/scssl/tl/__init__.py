"""Scanpy-style tools: functions that add scssl results to an AnnData."""

from ._embed import embed
from ._transfer import transfer_labels

__all__ = ["embed", "transfer_labels"]
