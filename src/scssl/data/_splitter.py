"""A scvi-tools data splitter that keeps minibatches sparse and reads backed data in blocks."""

from __future__ import annotations

import numpy as np
from scvi import settings
from scvi.dataloaders import DataSplitter
from torch.utils.data import default_convert

from ._sampler import DEFAULT_BLOCK_SIZE, BlockShuffleSampler, LabelledMixSampler


def _single(items: list):
    """collate_fn: the dataset already returns a whole minibatch for the sampler's index array."""
    return default_convert(items[0])


def default_block_size(adata) -> int:
    """64 consecutive cells for data read from disk (backed or sharded), 1 in memory."""
    return DEFAULT_BLOCK_SIZE if getattr(adata, "isbacked", False) else 1


class SparseDataSplitter(DataSplitter):
    """:class:`~scvi.dataloaders.DataSplitter` for scssl: sparse batches, block shuffling, DDP.

    - scvi-tools turns ``torch.sparse_csr`` minibatches into dense tensors after they reach the
      device; scssl's first layer consumes them sparse, so its cost grows with the non-zeros.
      This splitter returns batches unchanged.
    - The train/validation split and the minibatches are made of blocks of ``block_size``
      consecutive cells (see :class:`~scssl.data.BlockShuffleSampler`), so that a backed
      ``.h5ad`` or a list of shards is read in runs of rows rather than row by row.
      With ``block_size=1`` (the default for in-memory data) and one process, scvi-tools' own
      loaders and per-cell shuffle are used unchanged.
    - Under DDP every rank reads its own, disjoint share of the cells with the same number of
      steps per epoch (the block sampler, whatever the block size).

    Parameters
    ----------
    adata_manager, train_size, validation_size, shuffle_set_split, load_sparse_tensor, pin_memory
        As :class:`~scvi.dataloaders.DataSplitter`.
    block_size
        Consecutive cells kept together; ``None``: 64 for backed or sharded data, 1 otherwise.
    distributed_sampler
        Set by scvi-tools when a DDP strategy is used; the sampler then splits cells by rank.
    labelled_indices
        Cells with labels: training minibatches then mix labelled cells with cells drawn from
        all training cells, an epoch being a pass over the labelled ones
        (:class:`~scssl.data.LabelledMixSampler`; semi-supervised training).
    **kwargs
        Data loader options (``batch_size``, ``num_workers`` ...).

    """

    def __init__(
        self,
        adata_manager,
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        load_sparse_tensor: bool = False,
        pin_memory: bool = False,
        block_size: int | None = None,
        distributed_sampler: bool = False,
        labelled_indices: np.ndarray | None = None,
        **kwargs,
    ):
        self.batch_size = kwargs.pop("batch_size", None) or settings.batch_size
        super().__init__(
            adata_manager,
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            load_sparse_tensor=load_sparse_tensor,
            pin_memory=pin_memory,
            batch_size=self.batch_size,
            **kwargs,
        )
        self.block_size = (
            default_block_size(adata_manager.adata) if block_size is None else int(block_size)
        )
        self.distributed_sampler = distributed_sampler
        self.labelled_indices = labelled_indices

    @property
    def uses_block_sampler(self) -> bool:
        """Whether minibatches come from :class:`BlockShuffleSampler` (disk data or DDP)."""
        return self.block_size > 1 or self.distributed_sampler

    def setup(self, stage: str | None = None):
        """Split cells into train/validation/test sets made of whole blocks, each sorted."""
        if self.external_indexing is not None or self.block_size == 1:
            super().setup(stage)
            if not self.uses_block_sampler:
                return
        else:
            n_obs = self.adata_manager.adata.n_obs
            order = np.arange(n_obs)
            if self.shuffle_set_split:
                starts = np.arange(0, n_obs, self.block_size)
                rng = np.random.RandomState(seed=settings.seed)
                starts = starts[rng.permutation(len(starts))]
                blocks = [order[s : s + self.block_size] for s in starts]
                order = np.concatenate(blocks)
            self.val_idx = order[: self.n_val]
            self.train_idx = order[self.n_val : self.n_val + self.n_train]
            self.test_idx = order[self.n_val + self.n_train :]
        # Sorted sets: consecutive positions in a set are (nearly) consecutive rows on disk.
        self.train_idx = np.sort(self.train_idx)
        self.val_idx = np.sort(self.val_idx)
        self.test_idx = np.sort(self.test_idx)

    def _loader(
        self, indices: np.ndarray, shuffle: bool = False, drop_last: bool = False, sampler=None
    ):
        if sampler is None:
            sampler = BlockShuffleSampler(
                len(indices),
                batch_size=self.batch_size,
                block_size=self.block_size,
                shuffle=shuffle,
                drop_last=drop_last,
                seed=settings.seed or 0,
                num_replicas=None if self.distributed_sampler else 1,
                rank=None if self.distributed_sampler else 0,
            )
        kwargs = {k: v for k, v in self.data_loader_kwargs.items() if k != "batch_size"}
        return self.data_loader_cls(
            self.adata_manager,
            indices=indices,
            # Each sampler item is a whole minibatch: the DataLoader batches it by one and
            # _single unwraps it, so the dataset reads it with one call.
            sampler=sampler,
            collate_fn=_single,
            load_sparse_tensor=self.load_sparse_tensor,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def train_dataloader(self):
        """Training minibatches: shuffled blocks, this rank's share under DDP."""
        if self.labelled_indices is not None:
            labelled = np.flatnonzero(np.isin(self.train_idx, self.labelled_indices))
            sampler = LabelledMixSampler(
                len(self.train_idx), labelled, self.batch_size, seed=settings.seed or 0
            )
            return self._loader(self.train_idx, sampler=sampler)
        if not self.uses_block_sampler:
            return super().train_dataloader()
        return self._loader(self.train_idx, shuffle=True, drop_last=self.drop_last)

    def _in_order(self, indices: np.ndarray, default):
        """Minibatches of ``indices`` in order (``default()`` without the block sampler)."""
        if not self.uses_block_sampler:
            return default()
        if len(indices) > 0:
            return self._loader(indices, shuffle=False, drop_last=False)
        return None

    def val_dataloader(self):
        """Validation minibatches in order, this rank's share under DDP."""
        return self._in_order(self.val_idx, super().val_dataloader)

    def test_dataloader(self):
        """Test minibatches in order, this rank's share under DDP."""
        return self._in_order(self.test_idx, super().test_dataloader)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Return the batch unchanged (sparse stays sparse)."""
        return batch
