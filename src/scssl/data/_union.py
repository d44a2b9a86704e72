"""Several datasets with different genes in one AnnData, and which genes each batch measured.

A gene that a dataset did not measure is zero-filled in the united matrix; the boolean table
``adata.varm["measured_genes"]`` (genes x batches) keeps apart "not detected" (a measured zero)
and "not measured", so that masked pretexts leave the unmeasured genes out of their loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._validation import check_obs_column, check_unique_var_names, expression_matrix

#: Key of ``adata.varm`` with the genes (rows) each batch (columns) measured.
MEASURED_GENES_KEY = "measured_genes"


def concat_datasets(
    datasets: Mapping[str, ad.AnnData],
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    dataset_key: str = "dataset",
) -> ad.AnnData:
    """Cells of several datasets on the union of their genes, for pretraining on all of them.

    Genes are matched by ``var_names`` (give every dataset the same kind of identifier, symbols
    or Ensembl IDs; of duplicated names the first column is kept). A gene a dataset lacks is
    zero-filled for its cells, and ``varm["measured_genes"]`` records which genes each batch
    measured: an :class:`~scssl.model.SSLEncoder` set up with that batch column leaves the
    unmeasured genes out of its reconstruction loss. The inputs are not modified.

    Parameters
    ----------
    datasets
        ``{name: AnnData}`` with raw counts in ``.X`` or ``layer``.
    layer
        Layer of every dataset with the counts; ``None`` for ``.X``. The result holds them in
        ``.X``.
    batch_key
        Column of ``obs`` with each cell's batch within its dataset. In the result this column
        holds ``"<dataset>:<batch>"`` (the dataset name for datasets without the column);
        ``None``: the datasets are the batches.
    dataset_key
        Column of the result's ``obs`` with each cell's dataset.

    Returns
    -------
    Cells x union of the genes (in order of first appearance), CSR counts in ``.X``, the
    datasets' ``obs`` columns (missing values where a dataset lacks one), ``obs[dataset_key]``,
    ``obs[batch_key]`` when given, and ``varm["measured_genes"]``: a boolean DataFrame with one
    column per batch (the categories of ``obs[batch_key or dataset_key]``). Cell names get a
    ``-<dataset>`` suffix when they are not unique across the datasets.

    Examples
    --------
    >>> union = scssl.data.concat_datasets({"kang": kang, "pbmc5k": rna, "3tech": pbmc3})
    >>> scssl.model.SSLEncoder.setup_anndata(union, batch_key="dataset")
    >>> scssl.model.SSLEncoder(union).train(max_time="00:00:10:00")

    """
    if len(datasets) < 1:
        raise ValueError("datasets is empty; give {name: AnnData} of one or more datasets.")
    genes: dict[str, None] = {}
    pieces, measured = [], {}
    for name, data in datasets.items():
        name = str(name)
        check_unique_var_names(data.var_names, f"datasets[{name!r}].var_names")
        cell_batches = _cell_batches(name, data, batch_key, dataset_key)
        genes.update(dict.fromkeys(data.var_names.astype(str)))
        for batch in dict.fromkeys(cell_batches):
            if batch in measured:
                raise ValueError(
                    f"Batch {batch!r} of datasets[{name!r}] is also a batch of an earlier "
                    "dataset; rename a dataset so that '<dataset>:<batch>' labels stay apart."
                )
            measured[batch] = data.var_names.astype(str)
        pieces.append((name, data, cell_batches))
    union = pd.Index(list(genes))
    position = pd.Series(np.arange(len(union)), index=union)
    matrices, frames = [], []
    for name, data, cell_batches in pieces:
        first = ~data.var_names.duplicated()  # as gene alignment: the first of duplicates
        matrix = expression_matrix(data, layer)
        if not first.all():
            matrix = matrix[:, np.flatnonzero(first)]
        columns = position[data.var_names[first].astype(str)].to_numpy()
        matrices.append(_on_genes(matrix, columns, len(union)))
        obs = data.obs.copy()
        obs[dataset_key] = name
        if batch_key is not None:
            obs[batch_key] = cell_batches
        frames.append(obs)
    obs = pd.concat(frames)
    if not obs.index.is_unique:
        obs.index = obs.index.astype(str) + "-" + obs[dataset_key].astype(str)
    obs[dataset_key] = pd.Categorical(obs[dataset_key], categories=[p[0] for p in pieces])
    batch_column = batch_key or dataset_key
    order = list(measured)
    obs[batch_column] = pd.Categorical(obs[batch_column].astype(str), categories=order)
    var = pd.DataFrame(index=union)
    union_adata = ad.AnnData(X=sp.vstack(matrices, format="csr"), obs=obs, var=var)
    union_adata.varm[MEASURED_GENES_KEY] = pd.DataFrame(
        {batch: union.isin(measured[batch]) for batch in order}, index=union
    )
    return union_adata


def _cell_batches(name: str, data, batch_key: str | None, dataset_key: str) -> np.ndarray:
    """Each cell's batch in the union: ``"<name>:<batch>"``, or ``name`` without ``batch_key``."""
    if dataset_key in data.obs:
        raise ValueError(
            f"datasets[{name!r}].obs already has a {dataset_key!r} column; give another "
            "dataset_key."
        )
    if batch_key is None or batch_key not in data.obs:
        return np.full(data.n_obs, name, dtype=object)
    check_obs_column(data, batch_key, "batch_key")
    return np.array([f"{name}:{b}" for b in data.obs[batch_key].astype(str)], dtype=object)


def _on_genes(matrix, columns: np.ndarray, n_genes: int) -> sp.csr_matrix:
    """``matrix`` (cells x its genes) as CSR on ``n_genes`` genes, its own at ``columns``."""
    if not (sp.issparse(matrix) or isinstance(matrix, np.ndarray)):
        matrix = matrix[:]  # backed: read it
    block = matrix.tocsr() if sp.issparse(matrix) else sp.csr_matrix(np.asarray(matrix))
    moved = sp.csr_matrix(  # copies: sorting the indices must not touch the user's matrix
        (block.data, columns[block.indices], block.indptr),
        shape=(block.shape[0], n_genes),
        copy=True,
    )
    moved.sort_indices()
    return moved
