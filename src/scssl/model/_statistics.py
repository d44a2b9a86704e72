"""Expression statistics SSLEncoder keeps: per-batch means (batch centering), gene moments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from scssl.data import (
    MEASURED_GENES_KEY,
    check_obs_column,
    expression_matrix,
    iterate_minibatches,
)
from scssl.data._warnings import warn_user
from scssl.nn._sparse import to_dense

#: New batches with fewer cells than this are centred on a noisy mean (warned about).
MIN_CELLS_NEW_BATCH = 50
_NEW_BATCH = "__query__"


def batch_sums(module, matrix, codes: np.ndarray, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log1p-normalised expression and cell count per batch code."""
    sums = torch.zeros(n_batches, module.n_input, dtype=torch.float64)
    for chunk, x in iterate_minibatches(matrix, np.arange(matrix.shape[0]), 4096):
        x_norm = to_dense(module.normalize(x)).double()
        sums.index_add_(0, torch.as_tensor(codes[chunk]), x_norm)
    return sums.numpy(), np.bincount(codes, minlength=n_batches)


def set_batch_means(model) -> None:
    """Store each training batch's mean and the mean of all cells in the module's buffers.

    With ``mask_unmeasured_genes``, a gene's reference mean covers the cells of the batches
    that measured it, and an unmeasured gene's batch mean is that reference mean (no shift: the
    zero-filled gene stays zero, like a masked one).
    """
    module = model.module
    codes = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
    matrix = expression_matrix(model.adata, model._layer)
    sums, n_cells = batch_sums(module, matrix, codes.astype(np.int64), module.n_batch)
    measured = np.ones_like(sums, dtype=bool)
    if module.mask_unmeasured_genes:
        measured = module.measured_genes.cpu().numpy().astype(bool)
    n_measuring = (measured * n_cells[:, None]).sum(0)
    reference = sums.sum(0) / np.maximum(n_measuring, 1)
    means = np.where(measured, sums / np.maximum(n_cells, 1)[:, None], reference)
    with torch.no_grad():
        module.batch_means.copy_(torch.as_tensor(means))
        module.reference_mean.copy_(torch.as_tensor(reference))


def set_adversary_batches(model) -> None:
    """Mark the batches that have cells in the model's data: the adversary confuses those."""
    codes = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
    counts = np.bincount(codes.astype(np.int64), minlength=model.module.n_batch_covariate)
    with torch.no_grad():
        model.module.adversary_batches.copy_(torch.as_tensor(counts > 0))


def measured_genes_table(adata):
    """``adata.varm["measured_genes"]`` (genes x batches) as a DataFrame, or ``None``."""
    varm = getattr(adata, "varm", None)
    if varm is None or MEASURED_GENES_KEY not in varm:
        return None
    table = varm[MEASURED_GENES_KEY]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"adata.varm[{MEASURED_GENES_KEY!r}] must be a boolean DataFrame with one column per "
            f"batch (as scssl.data.concat_datasets writes), got {type(table).__name__}."
        )
    return table


def set_measured_genes(model) -> None:
    """Fill the module's ``measured_genes`` from ``adata.varm["measured_genes"]``, if present.

    The table's columns name batches: each registered batch needs its column.
    """
    table = measured_genes_table(model.adata)
    if table is None:
        return
    state = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
    batches = [str(b) for b in state.categorical_mapping]
    columns = [str(c) for c in table.columns]
    if len(batches) == 1 and len(columns) == 1:
        batches = columns  # one batch: the batch key may be unset
    missing = [b for b in batches if b not in columns]
    if missing:
        problem = (
            "the model was set up without a batch_key"
            if model.registry_["setup_args"].get("batch_key") is None
            else f"it has no column for the batches {missing[:5]}"
        )
        raise ValueError(
            f"adata.varm[{MEASURED_GENES_KEY!r}] names {len(columns)} batches ({columns[:5]}), but "
            f"{problem}; its columns must name the registered batches. Set the model up with the "
            "batch_key whose categories they are (for scssl.data.concat_datasets: its batch_key, "
            "or its dataset_key)."
        )
    values = table.set_axis(columns, axis=1)[batches].to_numpy()
    if values.dtype != bool:
        raise TypeError(f"adata.varm[{MEASURED_GENES_KEY!r}] must hold booleans.")
    with torch.no_grad():
        model.module.measured_genes.copy_(torch.as_tensor(values.T))


def centering_table(model, adata) -> tuple[np.ndarray, torch.Tensor]:
    """Each cell's row in a table of batch shifts: training batches, then new batches.

    Cells of batches the model was not trained on (or all cells, when ``adata`` has no batch
    column) are centred on the mean of their batch in ``adata``.
    """
    module = model.module
    state = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
    deltas = module.batch_deltas().detach().cpu()
    if adata is model.adata:
        codes = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
        return codes.astype(np.int64), deltas
    key = state.original_key
    if key in adata.obs:
        check_obs_column(adata, key, "batch_key")
        values = adata.obs[key].astype(str).to_numpy()
    else:
        warn_user(
            f"adata.obs has no {key!r} column (the model's batch_key): all cells are treated as "
            "one new batch and centred on their own mean expression.",
        )
        values = np.full(adata.n_obs, _NEW_BATCH)
    known = {str(c): i for i, c in enumerate(state.categorical_mapping)}
    new = sorted(set(values) - set(known))
    lookup = {**known, **{name: len(known) + i for i, name in enumerate(new)}}
    codes = np.array([lookup[v] for v in values], dtype=np.int64)
    if not new:
        return codes, deltas
    matrix = expression_matrix(adata, model._layer)
    sums, n_cells = batch_sums(module, matrix, codes, len(lookup))
    small = [name for name in new if n_cells[lookup[name]] < MIN_CELLS_NEW_BATCH]
    if small:
        warn_user(
            f"New batches with fewer than {MIN_CELLS_NEW_BATCH} cells are centred on noisy "
            f"means: {small[:5]}.",
        )
    new_means = torch.as_tensor(sums[len(known) :] / n_cells[len(known) :, None])
    new_deltas = new_means.float() - module.reference_mean.detach().cpu()
    return codes, torch.cat([deltas, new_deltas])


def gene_moments(
    model, max_cells: int = 10_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each gene's mean and mean square of log1p expression (float64), on up to ``max_cells``.

    The root mean square is the genes' importance when training minibatches decode a sample of
    them; the standard deviation sets ``reconstruction_gene_weights="inverse_sd"``.
    """
    matrix = expression_matrix(model.adata, model._layer)
    n_cells = matrix.shape[0]
    rows = np.arange(n_cells)
    if n_cells > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(n_cells, max_cells, replace=False))
    sums = torch.zeros(model.module.n_input, dtype=torch.float64)
    squares = torch.zeros(model.module.n_input, dtype=torch.float64)
    for _, x in iterate_minibatches(matrix, rows, 4096):
        x_norm = model.module.normalize(x)
        if x_norm.layout == torch.sparse_csr:
            values = x_norm.values().double()
            sums.index_add_(0, x_norm.col_indices(), values)
            squares.index_add_(0, x_norm.col_indices(), values**2)
        else:
            sums += x_norm.double().sum(0)
            squares += (x_norm.double() ** 2).sum(0)
    n_rows = max(len(rows), 1)
    return sums / n_rows, squares / n_rows
