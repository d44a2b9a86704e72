"""The expression matrix a model reads, and its checks (shared by the scssl models)."""

from __future__ import annotations

from anndata import AnnData

from scssl.data import check_expression_matrix

DEFAULT_MIN_OVERLAP = 0.5


def expression_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers (available: {list(adata.layers)}). Pass the "
            "layer that holds the raw counts, or layer=None for adata.X."
        )
    return adata.layers[layer]


def check_expression(adata: AnnData, layer: str | None, log_normalized: bool) -> None:
    """Validate the matrix the model will read (counts, or log-normalised values)."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_expression_matrix(
        expression_matrix(adata, layer), log_normalized=log_normalized, where=where
    )
