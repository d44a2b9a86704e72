"""Scanpy-style tools: functions that add scssl results to an AnnData or MuData."""

from ._embed import embed
from ._protein import predict_protein
from ._transfer import transfer_labels

__all__ = ["embed", "predict_protein", "transfer_labels"]
