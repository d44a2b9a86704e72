"""Several ``.h5ad`` shards read from disk as one AnnData-like collection.

anndata's :class:`~anndata.experimental.AnnCollection` concatenates backed AnnData objects
lazily; scvi-tools' :class:`~scvi.dataloaders.CollectionAdapter` lets an ``AnnDataManager``
register such a collection. This module adds what scssl needs on top: ``X`` (the adapter only
serves layers), ``var`` (gene vocabulary), a registry store of its own (the adapter's ``uns`` is
shared by all instances) and checks that the shards have the same genes in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scvi.dataloaders import CollectionAdapter


class _RowReader(sp.csr_matrix):
    """Row access to one sparse matrix (``X`` or a layer) of an AnnCollection.

    ``reader[rows]`` returns the rows as a scipy CSR matrix, reading only those rows from disk.
    It subclasses ``csr_matrix`` only so that scvi-tools' type checks accept it (as scvi-tools'
    own ``ArrayFakerSparse`` does); no matrix is held in memory.
    """

    def __init__(self, collection, layer: str | None, n_vars: int):
        self.collection = collection
        self.layer = layer
        self._shape = (collection.n_obs, n_vars)

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            rows, cols = rows
            return self[rows][:, cols]
        view = self.collection[rows]
        block = view.X if self.layer is None else view.layers[self.layer]
        return sp.csr_matrix(block)

    @property
    def data(self) -> np.ndarray:
        """Non-zero values of the first cells (scvi-tools' count check samples them)."""
        return self[: min(64, self._shape[0])].data

    @property
    def dtype(self):
        return self.data.dtype

    def getformat(self) -> str:
        return "csr"

    def __repr__(self) -> str:
        where = "X" if self.layer is None else f"layers[{self.layer!r}]"
        n_shards = len(self.collection.adatas)
        return f"<{self._shape[0]} x {self._shape[1]} {where} read from {n_shards} shards>"


class _Layers:
    def __init__(self, owner: ShardedAnnData):
        self._owner = owner

    def keys(self):
        return self._owner.collection.adatas[0].layers.keys()

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, key) -> bool:
        return all(key in a.layers for a in self._owner.collection.adatas)

    def __getitem__(self, key: str) -> _RowReader:
        if key not in self:
            raise KeyError(key)
        return _RowReader(self._owner.collection, key, self._owner.n_vars)


class ShardedAnnData(CollectionAdapter):
    """Shards (``.h5ad`` files or AnnData objects) read lazily as one AnnData-like object.

    Build it with :func:`read_shards`. It is registered with
    :meth:`scssl.model.SSLEncoder.setup_anndata` like an AnnData and read minibatch by minibatch
    from disk during training and inference; nothing but ``obs`` is held in memory.
    """

    SPECIAL_ATTRS = [*CollectionAdapter.SPECIAL_ATTRS, "X", "var", "obs", "shape"]

    def __init__(self, collection, var: pd.DataFrame):
        super().__init__(collection)
        # An instance attribute: CollectionAdapter.uns is one dict shared by every adapter.
        self.uns = {}
        self._var = var
        self._obsm: dict = {}

    @property
    def X(self) -> _RowReader:
        return _RowReader(self.collection, None, self.n_vars)

    @property
    def layers(self) -> _Layers:
        return _Layers(self)

    @property
    def var(self) -> pd.DataFrame:
        return self._var

    @property
    def var_names(self) -> pd.Index:
        return self._var.index

    @property
    def obs(self) -> pd.DataFrame:
        return self.collection.obs

    @property
    def obs_names(self) -> pd.Index:
        return self.collection.obs_names

    @property
    def n_obs(self) -> int:
        return self.collection.n_obs

    @property
    def n_vars(self) -> int:
        return len(self._var)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_obs, self.n_vars)

    @property
    def obsm(self) -> dict:
        """Per-cell arrays held in memory by the collection (e.g. ``tl.embed`` results).

        The shard files are not modified.
        """
        return self._obsm

    @property
    def shard_sizes(self) -> list[int]:
        """Cells per shard, in order."""
        return [a.n_obs for a in self.collection.adatas]

    def __repr__(self) -> str:
        return (
            f"ShardedAnnData with n_obs x n_vars = {self.n_obs} x {self.n_vars} from "
            f"{len(self.collection.adatas)} shards\n    obs: {list(self.obs.columns)}"
        )


def read_shards(
    shards: Sequence[str | PathLike | ad.AnnData], label: str | None = None
) -> ShardedAnnData:
    """Open ``.h5ad`` shards backed (read-only) as one lazily concatenated collection.

    Parameters
    ----------
    shards
        Paths of ``.h5ad`` files (opened with ``backed="r"``) or AnnData objects, in order.
        All must have the same genes in the same order (align them first with
        :meth:`scssl.model.SSLEncoder.prepare_query_anndata` when they do not) and the same
        ``obs`` columns (columns missing from a shard are dropped).
    label
        If given, an ``obs`` column with the shard number of each cell.

    Returns
    -------
    An AnnData-like object for :meth:`scssl.model.SSLEncoder.setup_anndata`,
    :meth:`~scssl.model.SSLEncoder.get_latent_representation` and :func:`scssl.tl.embed`
    (which writes into the collection's in-memory ``obsm``, not into the read-only shards).

    Raises
    ------
    ValueError
        When no shard is given or the shards' genes differ.

    """
    from anndata.experimental import AnnCollection

    if isinstance(shards, str | PathLike | ad.AnnData):
        raise ValueError("read_shards expects a list of shards, not a single path or AnnData.")
    if len(shards) == 0:
        raise ValueError("read_shards needs at least one shard.")
    adatas = [s if isinstance(s, ad.AnnData) else ad.read_h5ad(s, backed="r") for s in shards]
    reference = adatas[0].var_names
    for i, a in enumerate(adatas[1:], start=1):
        if not reference.equals(a.var_names):
            n_shared = len(reference.intersection(a.var_names))
            raise ValueError(
                f"Shard {i} has other genes than shard 0 ({a.n_vars} vs {len(reference)} genes, "
                f"{n_shared} shared, or the same genes in another order). Write the shards with "
                "one gene order (e.g. align each with SSLEncoder.prepare_query_anndata) first."
            )
    collection = AnnCollection(
        adatas, join_obs="inner", join_vars=None, label=label, index_unique=None
    )
    return ShardedAnnData(collection, adatas[0].var.copy())
