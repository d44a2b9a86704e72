"""Training minibatches streamed from a TileDB-SOMA experiment (e.g. the CELLxGENE census).

The reading, block shuffling and DDP partitioning are tiledbsoma-ml's
(:class:`tiledbsoma_ml.ExperimentDataset`); this module turns its minibatches into the
dictionaries of sparse tensors that scvi-tools training plans and scssl modules consume, and
describes the query's genes so an :class:`~scssl.model.SSLEncoder` can be built on them.

Needs the optional dependencies ``tiledbsoma`` and ``tiledbsoma-ml``
(``pip install "scssl[soma]"``); the census needs ``cellxgene-census`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from scvi import REGISTRY_KEYS
from torch.utils.data import DataLoader, IterableDataset

from ._loading import to_torch

STUDY_CENSUS_VERSION = "2023-05-15"


def _require(module: str, extra: str = "soma", purpose: str = "read TileDB-SOMA data"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed to {purpose}: pip install 'scssl[{extra}]'."
        ) from err


class _ScviMinibatches(IterableDataset):
    """tiledbsoma-ml minibatches ``(csr, obs)`` -> ``{"X": sparse CSR tensor, "batch": codes}``."""

    def __init__(self, dataset, batch_key: str | None, categories: Sequence[str] | None):
        self.dataset = dataset
        self.batch_key = batch_key
        self.codes = None if categories is None else {c: i for i, c in enumerate(categories)}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        # tiledbsoma-ml reshuffles only when told the epoch; Lightning does not know this
        # iterable, so count epochs here (one __iter__ per epoch).
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        for X, obs in self.dataset:
            batch = {
                REGISTRY_KEYS.X_KEY: to_torch(X),
                "soma_joinid": torch.as_tensor(obs["soma_joinid"].to_numpy()),
            }
            if self.batch_key is not None:
                values = obs[self.batch_key].astype(str).map(self.codes).to_numpy()
                batch[REGISTRY_KEYS.BATCH_KEY] = torch.as_tensor(values[:, None], dtype=torch.long)
            yield batch


class SOMADataModule(LightningDataModule):
    """Cells of a TileDB-SOMA experiment, streamed from disk or the cloud for training.

    Pass it to :meth:`scssl.model.SSLEncoder.train` as ``datamodule=``. Minibatches are read by
    :class:`tiledbsoma_ml.ExperimentDataset`: ``io_batch_size`` rows at a time, shuffled in
    chunks of ``shuffle_chunk_size`` consecutive rows, kept sparse, and split across DDP ranks
    and DataLoader workers (each rank sees distinct cells, the same number per rank).

    Parameters
    ----------
    experiment
        A :class:`tiledbsoma.Experiment` or its URI (a local path, ``s3://`` ...).
    measurement_name
        The measurement with the expression (``"RNA"``).
    layer
        The ``X`` layer with raw counts (``"raw"`` in the census; ``"data"`` for experiments
        written by ``tiledbsoma.io.from_anndata``).
    obs_value_filter, var_value_filter
        SOMA value filters selecting cells and genes, e.g. ``"is_primary_data == True"``,
        ``"feature_id in ['ENSG...', ...]"``.
    obs_coords, var_coords
        Alternatively (or in addition), ``soma_joinid`` values of the cells and genes.
    var_name_column
        The ``var`` column used as gene names (``"feature_name"`` in the census: gene symbols).
        ``None`` picks ``feature_name``, else the first string column.
    batch_key
        ``obs`` column of the batch covariate, or ``None``.
    batch_size
        Cells per minibatch (per rank).
    train_size
        Share of cells for training; the rest validates (early stopping).
    shuffle_chunk_size, io_batch_size
        Block shuffling and read size of tiledbsoma-ml.
    seed
        Seed of the split and the shuffle (the same on every rank).
    num_workers
        DataLoader workers. Sparse minibatches need ``0`` (torch cannot pass sparse tensors
        between processes).

    Examples
    --------
    >>> dm = scssl.data.SOMADataModule("kang.soma", layer="data", batch_size=128)
    >>> adata = dm.example_anndata()  # a few cells, for the model's genes and registry
    >>> scssl.model.SSLEncoder.setup_anndata(adata)
    >>> model = scssl.model.SSLEncoder(adata)
    >>> model.train(datamodule=dm, max_epochs=10)

    """

    def __init__(
        self,
        experiment,
        measurement_name: str = "RNA",
        layer: str = "raw",
        obs_value_filter: str | None = None,
        var_value_filter: str | None = None,
        obs_coords: Sequence[int] | None = None,
        var_coords: Sequence[int] | None = None,
        var_name_column: str | None = None,
        batch_key: str | None = None,
        batch_size: int = 128,
        train_size: float = 0.9,
        shuffle_chunk_size: int = 64,
        io_batch_size: int = 65_536,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        soma = _require("tiledbsoma")
        _require("tiledbsoma_ml")
        if isinstance(experiment, str):
            experiment = soma.Experiment.open(experiment)
        if measurement_name not in experiment.ms:
            raise KeyError(
                f"measurement_name={measurement_name!r} is not in the experiment "
                f"(measurements: {list(experiment.ms.keys())})."
            )
        layers = list(experiment.ms[measurement_name].X.keys())
        if layer not in layers:
            raise KeyError(f"layer={layer!r} is not an X layer of {measurement_name!r} ({layers}).")
        if not 0.0 < train_size <= 1.0:
            raise ValueError(f"train_size={train_size} must be in (0, 1].")
        if io_batch_size % shuffle_chunk_size:
            io_batch_size -= io_batch_size % shuffle_chunk_size
        self.experiment = experiment
        self.measurement_name = measurement_name
        self.layer = layer
        self.query = experiment.axis_query(
            measurement_name,
            obs_query=soma.AxisQuery(
                value_filter=obs_value_filter,
                coords=() if obs_coords is None else (np.asarray(obs_coords),),
            ),
            var_query=soma.AxisQuery(
                value_filter=var_value_filter,
                coords=() if var_coords is None else (np.asarray(var_coords),),
            ),
        )
        self.n_obs = int(self.query.n_obs)
        if self.n_obs == 0:
            raise ValueError("The query selects no cells; check obs_value_filter / obs_coords.")
        self.var = self._read_var(var_name_column)
        self.n_vars = len(self.var)
        self.batch_key = batch_key
        self.batch_categories = None
        if batch_key is not None:
            values = self.query.obs(column_names=[batch_key]).concat().to_pandas()[batch_key]
            self.batch_categories = sorted(values.astype(str).unique())
        self.n_batch = 1 if batch_key is None else len(self.batch_categories)
        self.batch_size = batch_size
        self.train_size = train_size
        self.shuffle_chunk_size = shuffle_chunk_size
        self.io_batch_size = io_batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.n_train = round(self.n_obs * train_size)
        self.n_val = self.n_obs - self.n_train

    # ---------------------------------------------------------------- genes
    def _read_var(self, var_name_column: str | None) -> pd.DataFrame:
        var = self.query.var().concat().to_pandas()
        if var_name_column is None:
            candidates = [
                c for c in var.columns if c != "soma_joinid" and var[c].dtype.kind in "OUS"
            ]
            if "feature_name" in var.columns:
                var_name_column = "feature_name"
            elif candidates:
                var_name_column = candidates[0]
            else:
                raise ValueError(
                    "var has no string column to name the genes; pass var_name_column."
                )
        if var_name_column not in var.columns:
            raise KeyError(
                f"var_name_column={var_name_column!r} is not a var column ({list(var)})."
            )
        var = var.sort_values("soma_joinid").set_index(var_name_column, drop=False)
        var.index = var.index.astype(str)
        var.index.name = None
        return var

    def example_anndata(self, n_obs: int = 256) -> ad.AnnData:
        """The query's first ``n_obs`` cells in memory, with all the query's genes.

        Build the model on it (``setup_anndata`` + ``SSLEncoder``): it fixes the gene
        vocabulary (the query's genes, in ``soma_joinid`` order, as the minibatches) and the
        batch categories (all those of the query).
        """
        return self.to_anndata(self.query.obs_joinids().to_numpy()[:n_obs])

    def to_anndata(self, obs_joinids: Sequence[int] | None = None) -> ad.AnnData:
        """Cells of the query (all, or the given ``soma_joinid`` values) as an in-memory AnnData."""
        soma = _require("tiledbsoma")
        coords = () if obs_joinids is None else (np.asarray(obs_joinids),)
        joinids = self.query.obs_joinids().to_numpy()
        if obs_joinids is not None:
            outside = coords[0][~np.isin(coords[0], joinids)]
            if len(outside):
                raise ValueError(
                    f"{len(outside)} of the obs_joinids are not cells of the query (e.g. "
                    f"{', '.join(map(str, outside[:5]))}): the data module holds the cells its "
                    "obs_value_filter selects (dm.query.obs_joinids())."
                )
        with self.experiment.axis_query(
            self.measurement_name,
            obs_query=soma.AxisQuery(coords=coords or (joinids,)),
            var_query=soma.AxisQuery(coords=(self.var["soma_joinid"].to_numpy(),)),
        ) as query:
            adata = query.to_anndata(X_name=self.layer)
        # to_anndata orders cells and genes by soma_joinid, as the minibatches.
        adata.var_names = self.var.index
        if self.batch_key is not None:
            adata.obs[self.batch_key] = pd.Categorical(
                adata.obs[self.batch_key].astype(str), categories=self.batch_categories
            )
        return adata

    # ----------------------------------------------------------- lightning
    def setup(self, stage: str | None = None) -> None:
        """Build the tiledbsoma-ml datasets (after DDP has started: they read the rank)."""
        from tiledbsoma_ml import ExperimentDataset

        columns = ["soma_joinid"] + ([self.batch_key] if self.batch_key else [])
        dataset = ExperimentDataset(
            self.query,
            layer_name=self.layer,
            obs_column_names=columns,
            batch_size=self.batch_size,
            io_batch_size=self.io_batch_size,
            shuffle=True,
            shuffle_chunk_size=self.shuffle_chunk_size,
            seed=self.seed,
            return_sparse_X=True,
        )
        if self.n_val > 0:
            self.train_dataset, self.val_dataset = dataset.random_split(
                self.train_size, 1.0 - self.train_size, seed=self.seed
            )
        else:
            self.train_dataset, self.val_dataset = dataset, None

    def _loader(self, dataset) -> DataLoader:
        wrapped = _ScviMinibatches(dataset, self.batch_key, self.batch_categories)
        return DataLoader(wrapped, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training minibatches (this rank's share under DDP)."""
        return self._loader(self.train_dataset)

    def val_dataloader(self) -> DataLoader | list:
        """Validation minibatches, or none when ``train_size=1``."""
        return [] if self.val_dataset is None else self._loader(self.val_dataset)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int):
        """Return the batch unchanged (sparse stays sparse)."""
        return batch


def census_datamodule(
    census_version: str = STUDY_CENSUS_VERSION,
    organism: str = "homo_sapiens",
    obs_value_filter: str | None = "is_primary_data == True",
    genes: Sequence[str] | None = None,
    **kwargs,
) -> SOMADataModule:
    """A :class:`SOMADataModule` over the CELLxGENE census: the study's pretraining corpus.

    The study pretrained on the primary-data human cells of census ``2023-05-15`` over 19,331
    protein-coding genes (``feature_id`` in its ``var.parquet``); with defaults and ``genes``
    set to those IDs, this selects the same corpus::

        genes = pd.read_parquet("var.parquet")["feature_id"]
        dm = scssl.data.census_datamodule(genes=genes, batch_size=8192)

    Parameters
    ----------
    census_version
        Census release (the study: ``"2023-05-15"``).
    organism
        ``"homo_sapiens"`` or ``"mus_musculus"``.
    obs_value_filter
        Cell filter (default: primary data only, no duplicate cells).
    genes
        Ensembl IDs (``feature_id``) of the genes to keep; ``None`` keeps all.
    **kwargs
        Further :class:`SOMADataModule` options (``batch_key``, ``batch_size`` ...).

    """
    census = _require("cellxgene_census", extra="census", purpose="open the CELLxGENE Census")
    var_value_filter = kwargs.pop("var_value_filter", None)
    if genes is not None:
        ids = ", ".join(repr(str(g)) for g in genes)
        gene_filter = f"feature_id in [{ids}]"
        var_value_filter = (
            gene_filter if var_value_filter is None else (f"({var_value_filter}) and {gene_filter}")
        )
    handle = census.open_soma(census_version=census_version)
    return SOMADataModule(
        handle["census_data"][organism],
        measurement_name="RNA",
        layer="raw",
        obs_value_filter=obs_value_filter,
        var_value_filter=var_value_filter,
        var_name_column=kwargs.pop("var_name_column", "feature_name"),
        **kwargs,
    )
