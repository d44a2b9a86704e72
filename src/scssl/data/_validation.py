"""Checks on the expression matrix a user hands to scssl.

The checks read the matrix in row chunks and never modify it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._warnings import warn_user

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 10_000
#: log1p(normalize_total(1e4)) values cannot exceed log1p(1e4) = 9.2; above this, data declared
#: log-normalised are something else (counts, scaled counts, other normalisations).
MAX_LOG_NORMALIZED = 12.0


def _row_chunks(matrix, chunk_rows: int | None = None):
    """Yield ``(start, block)`` row blocks; works for dense, sparse and backed matrices.

    ``chunk_rows``: ``_CHUNK_ROWS`` by default.
    """
    chunk_rows = chunk_rows or _CHUNK_ROWS
    n_rows = matrix.shape[0]
    for start in range(0, n_rows, chunk_rows):
        block = matrix[start : start + chunk_rows]
        if sp.issparse(block):
            yield start, block.tocsr()
        else:
            yield start, np.asarray(block)


def _values(block) -> np.ndarray:
    return block.data if sp.issparse(block) else block.ravel()


def _scan(matrix, where: str) -> dict:
    """Counts of NaN, infinite, negative values and empty cells; range; a non-integer value."""
    stats = {"nan": 0, "inf": 0, "negative": 0, "empty": 0, "min": np.inf, "max": -np.inf}
    stats["fraction"] = None
    for _, block in _row_chunks(matrix):
        values = _values(block)
        if values.dtype.kind not in "biuf":
            raise ValueError(
                f"{where} has dtype {values.dtype}; scssl needs a numeric matrix of counts. "
                f"Convert it, e.g. {where} = {where}.astype(np.float32), or read the counts "
                "again as numbers."
            )
        floating = values.dtype.kind == "f"
        stats["nan"] += int(np.isnan(values).sum()) if floating else 0
        stats["inf"] += int(np.isinf(values).sum()) if floating else 0
        finite = values[np.isfinite(values)] if floating else values
        if finite.size:
            stats["min"] = min(stats["min"], float(finite.min()))
            stats["max"] = max(stats["max"], float(finite.max()))
            stats["negative"] += int((finite < 0).sum())
            if stats["fraction"] is None and floating:
                fractional = finite[finite != np.round(finite)]
                if fractional.size:
                    stats["fraction"] = float(fractional[0])
        stats["empty"] += int((np.asarray(block.sum(axis=1)).ravel() == 0).sum())
    return stats


#: How to point scssl at raw counts, unless a caller knows better (e.g. a MuData modality).
COUNTS_HINT = (
    "put the raw counts in {where}, or name the layer that holds them "
    "(setup_anndata(adata, layer='counts'))"
)
LOG_HINT = "if the values are normalize_total + log1p, set up with log_normalized=True"


def check_expression_matrix(
    matrix,
    *,
    log_normalized: bool = False,
    where: str = "adata.X",
    counts_hint: str = COUNTS_HINT,
    log_hint: str | None = LOG_HINT,
    empty_effect: str = "their input is all zeros and they all embed to the same point",
    remove_empty: str = "sc.pp.filter_cells(adata, min_counts=1)",
) -> int:
    """Validate an expression matrix before scssl uses it.

    Parameters
    ----------
    matrix
        Cells x genes, dense, scipy sparse or a backed dataset.
    log_normalized
        ``False`` (default): the matrix must hold raw counts (non-negative integers).
        ``True``: the matrix holds ``normalize_total`` + ``log1p`` values.
    where
        How the user addresses the matrix, used in error messages (e.g. ``adata.layers['counts']``).
    counts_hint
        How to hand scssl the raw counts instead, for the messages (``{where}`` is filled in).
    log_hint
        How to declare log-normalised values, for the messages; ``None`` when they are not
        accepted (e.g. proteins).
    empty_effect
        What cells without counts do to the model, for the warning about them.
    remove_empty
        How to remove those cells, for the same warning.

    Returns
    -------
    The number of cells with no counts (warned about, not an error).

    Raises
    ------
    ValueError
        On an empty matrix, a non-numeric dtype, NaN, infinite or negative values, or
        non-integer values when counts are expected.

    """
    counts_hint = counts_hint.format(where=where)
    n_obs, n_vars = matrix.shape
    if n_obs == 0 or n_vars == 0:
        raise ValueError(
            f"{where} is empty ({n_obs} cells x {n_vars} genes); scssl needs at least one cell "
            "and one gene. Check the selection or filtering that produced it (e.g. "
            "sc.pp.filter_cells/filter_genes thresholds, or an obs/var mask that matched nothing)."
        )

    stats = _scan(matrix, where)
    n_nan, n_inf, n_negative, n_empty = (stats[k] for k in ("nan", "inf", "negative", "empty"))
    min_value, max_value, non_integer_example = stats["min"], stats["max"], stats["fraction"]

    if n_nan or n_inf:
        raise ValueError(
            f"{where} contains {n_nan} NaN and {n_inf} infinite values. scssl needs finite "
            "expression values: remove or impute them (e.g. recompute the matrix from the raw "
            f"counts), or {counts_hint}."
        )
    if n_negative:
        raise ValueError(
            f"{where} contains {n_negative} negative values (minimum {min_value:g}). Expression "
            f"values must be non-negative, not scaled or centred data: {counts_hint}."
        )
    if not log_normalized and non_integer_example is not None:
        raise ValueError(
            f"{where} holds non-integer values (e.g. {non_integer_example:g}), but raw counts are "
            f"expected: {counts_hint}" + (f"; {log_hint}." if log_hint else ".")
        )
    if log_normalized and max_value > MAX_LOG_NORMALIZED:
        raise ValueError(
            f"{where} was declared log-normalised (log_normalized=True) but holds values up to "
            f"{max_value:g}; log1p(normalize_total(1e4)) values stay below "
            f"{np.log1p(1e4):.1f}: it looks like raw or scaled counts. Pass raw counts with "
            "log_normalized=False, or normalise first "
            "(sc.pp.normalize_total(adata, target_sum=1e4); sc.pp.log1p(adata))."
        )
    if n_empty:
        warn_user(
            f"{n_empty} of {n_obs} cells in {where} have no counts; {empty_effect}. Remove them "
            f"with {remove_empty} unless that is intended."
        )
    return n_empty


def check_unique_var_names(var_names, where: str = "adata.var_names") -> None:
    """Warn when gene names are duplicated: alignment then keeps the first occurrence."""
    duplicated = var_names[var_names.duplicated()]
    if len(duplicated):
        examples = ", ".join(map(str, duplicated.unique()[:5]))
        warn_user(
            f"{where} has {len(duplicated)} duplicated gene names (e.g. {examples}). Gene "
            "alignment keeps the first occurrence of each; call adata.var_names_make_unique() "
            "to keep them apart."
        )


def expression_matrix(adata, layer: str | None, where: str = "adata"):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in {where}.layers (available: {list(adata.layers)}). When "
            f"setting up, name the layer that holds the raw counts (layer=None for {where}.X); "
            f"a model set up with layer={layer!r} reads new data from that layer too: store "
            f"their raw counts there, e.g. {where}.layers[{layer!r}] = {where}.X.copy()."
        )
    return adata.layers[layer]


def check_expression(adata, layer: str | None, log_normalized: bool) -> None:
    """Validate the matrix a model will read from ``adata`` (counts, or log-normalised values)."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_expression_matrix(
        expression_matrix(adata, layer), log_normalized=log_normalized, where=where
    )


def check_obs_column(adata, key: str | None, name: str, where: str = "adata") -> None:
    """A column named by a setup argument exists and has no missing values.

    ``where`` is how the user calls ``adata``, for the messages.
    """
    if key is None:
        return
    if key not in adata.obs:
        raise KeyError(
            f"{name}={key!r} is not a column of {where}.obs (columns: {list(adata.obs.columns)})."
        )
    n_missing = int(adata.obs[key].isna().sum())
    if n_missing:
        column = f"{where}.obs[{key!r}]"
        raise ValueError(
            f"{column} ({name}) has {n_missing} missing (NaN) values. Give every cell a value, "
            f"e.g. {column} = {column}.astype(str) (NaN becomes 'nan', a group of its own), or "
            "drop the cells without one."
        )


#: Labelled cells per type below which scssl names the type (scvi-tools warns by category code).
MIN_LABELLED_CELLS = 3


def warn_rare_labels(adata, labels_key: str, unlabeled_category, *, where: str = "adata") -> None:
    """Name the cell types with fewer than ``MIN_LABELLED_CELLS`` labelled cells.

    ``where`` names the AnnData in the message (``"reference"`` in label transfer).
    """
    counts = adata.obs[labels_key].value_counts()
    rare = counts[(counts > 0) & (counts < MIN_LABELLED_CELLS)]
    rare = rare[[str(t) != str(unlabeled_category) for t in rare.index]]
    if len(rare):
        named = ", ".join(f"{t!r} ({n})" for t, n in rare.items())
        warn_user(
            f"{where}.obs[{labels_key!r}] has cell types with fewer than {MIN_LABELLED_CELLS} "
            f"labelled cells: {named}. The classifier learns them from those cells alone; "
            "label more of them if they matter."
        )


def check_label_column(adata, labels_key: str, unlabeled_category: str) -> None:
    """Raise, naming the fix, when ``adata.obs[labels_key]`` is absent or unusable.

    Unusable: NaN labels, or numbers where ``unlabeled_category`` is text.
    """
    if labels_key not in adata.obs:
        check_obs_column(adata, labels_key, "labels_key")
    n_missing = int(adata.obs[labels_key].isna().sum())
    if n_missing:
        raise ValueError(
            f"adata.obs[{labels_key!r}] has {n_missing} missing (NaN) labels. Fill them with "
            f"the unlabeled category, e.g. adata.obs[{labels_key!r}] = adata.obs"
            f"[{labels_key!r}].cat.add_categories({unlabeled_category!r}).fillna("
            f"{unlabeled_category!r}), so that they are treated as unlabeled."
        )
    labels = adata.obs[labels_key]
    values = labels.cat.categories if isinstance(labels.dtype, pd.CategoricalDtype) else labels
    numeric = pd.api.types.is_numeric_dtype(values.dtype)
    if numeric and isinstance(unlabeled_category, str):
        raise ValueError(
            f"adata.obs[{labels_key!r}] holds numbers ({values.dtype}) but the unlabeled "
            f"category is text ({unlabeled_category!r}); give the labels as text, e.g. "
            f"adata.obs[{labels_key!r}] = adata.obs[{labels_key!r}].astype(str), or an "
            "unlabeled_category of the labels' type."
        )
