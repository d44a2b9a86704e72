"""Minibatch sampling that keeps reads from disk sequential and splits cells across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

DEFAULT_BLOCK_SIZE = 64
DEFAULT_WINDOW_BLOCKS = 8


def _distributed_rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BlockShuffleSampler(DistributedSampler):
    """Yields minibatches of cell positions: shuffled blocks of contiguous cells, split by rank.

    Each epoch, the positions ``0 .. n_obs - 1`` are cut into blocks of ``block_size``
    consecutive cells and the blocks are put in a random order; cells are then mixed within
    windows of ``window_blocks`` blocks and cut into minibatches, each sorted. A minibatch thus
    reads a few runs of consecutive rows from disk instead of ``batch_size`` scattered rows,
    while every epoch still visits the cells in a new order. ``block_size=1`` is a plain
    per-cell shuffle.

    Under distributed training (a ``torch.distributed`` process group, as Lightning's DDP sets
    up), the shuffled sequence is split into ``num_replicas`` equal, disjoint parts: each rank
    sees distinct cells and every rank runs the same number of steps (up to
    ``num_replicas - 1`` cells, different each epoch, are left out of an epoch). Every rank
    must use the same ``seed``.

    It subclasses :class:`~torch.utils.data.DistributedSampler` so that Lightning keeps it
    instead of wrapping it in a sampler of its own; Lightning calls :meth:`set_epoch`.

    Parameters
    ----------
    n_obs
        Number of positions to sample from.
    batch_size
        Cells per minibatch (per rank).
    block_size
        Consecutive cells kept together.
    shuffle
        Shuffle (training); ``False`` yields positions in order (validation, inference).
    drop_last
        Drop the last, incomplete minibatch of each rank.
    seed
        Seed of the shuffle; the permutation of epoch ``e`` uses ``(seed, e)``.
    window_blocks
        Blocks whose cells are mixed before cutting minibatches.
    num_replicas, rank
        Number of ranks and this rank; ``None`` reads them from ``torch.distributed`` when a
        process group is initialised, else 1 and 0.

    """

    def __init__(
        self,
        n_obs: int,
        batch_size: int = 128,
        block_size: int = DEFAULT_BLOCK_SIZE,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        window_blocks: int = DEFAULT_WINDOW_BLOCKS,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        # DistributedSampler.__init__ needs a dataset and a process group; set its fields here.
        if batch_size < 1 or block_size < 1 or window_blocks < 1:
            raise ValueError(
                f"batch_size ({batch_size}), block_size ({block_size}) and window_blocks "
                f"({window_blocks}) must be positive."
            )
        default_rank, default_size = _distributed_rank_and_size()
        self.num_replicas = default_size if num_replicas is None else int(num_replicas)
        self.rank = default_rank if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank={self.rank} is not in [0, {self.num_replicas}).")
        self.n_obs = int(n_obs)
        self.batch_size = int(batch_size)
        self.block_size = int(block_size)
        self.window_blocks = int(window_blocks)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0
        self.num_samples = self.n_obs // self.num_replicas if self.num_replicas > 1 else self.n_obs
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` next (Lightning calls this every epoch)."""
        self.epoch = int(epoch)

    def positions(self) -> np.ndarray:
        """Positions of this rank for the current epoch, in visiting order."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            starts = np.arange(0, self.n_obs, self.block_size)
            starts = starts[rng.permutation(len(starts))]
            lengths = np.minimum(self.block_size, self.n_obs - starts)
            # concatenated ranges start .. start + length - 1, in the shuffled block order
            offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
            order = np.arange(self.n_obs) + offsets
        else:
            rng = None
            order = np.arange(self.n_obs)
        mine = order[self.rank * self.num_samples : (self.rank + 1) * self.num_samples].copy()
        if rng is not None and self.block_size * self.window_blocks > 1:
            window = self.block_size * self.window_blocks
            for start in range(0, len(mine), window):
                rng.shuffle(mine[start : start + window])
        return mine

    def __iter__(self) -> Iterator[np.ndarray]:
        mine = self.positions()
        if self.shuffle:
            self.epoch += 1  # a new order next time, also when set_epoch is not called
        for start in range(0, len(mine), self.batch_size):
            batch = mine[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                break
            yield np.sort(batch)

    def __len__(self) -> int:
        """Minibatches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


class LabelledMixSampler(DistributedSampler):
    """Semi-supervised minibatches: labelled cells, and as many cells drawn from all cells.

    An epoch is one pass over the labelled cells (in a new order each epoch, cycled to fill
    at least ``min_steps`` steps, and enough steps to draw ``min_drawn_share`` of all cells);
    each minibatch holds ``batch_size`` of them first, then
    ``batch_size`` cells drawn at random from all ``n_obs`` positions (labelled or not), in
    that order (a module tells the halves apart by position; in-memory data only, as a backed
    file is read in sorted order). Subclasses :class:`~torch.utils.data.DistributedSampler` so that
    Lightning keeps it (single process only).

    Parameters
    ----------
    n_obs
        Number of positions to draw the second half from.
    labelled
        Positions of the labelled cells.
    batch_size
        Labelled cells per minibatch (and cells drawn from all).
    min_steps
        Fewest minibatches per epoch (few labelled cells are cycled).
    seed
        Seed of the draws; epoch ``e`` uses ``(seed, e)``.
    min_drawn_share
        Fewest cells drawn from all per epoch, as a share of ``n_obs``: with a small labelled
        reference and a large query, a pass over the labelled cells alone would leave most of
        the query undrawn (a third: each cell about 10 times in the classifier's 30 epochs).

    """

    def __init__(
        self,
        n_obs: int,
        labelled: np.ndarray,
        batch_size: int,
        min_steps: int = 10,
        seed: int = 0,
        min_drawn_share: float = 1 / 3,
    ):
        labelled = np.asarray(labelled, dtype=np.int64)
        if len(labelled) == 0:
            raise ValueError("LabelledMixSampler needs labelled cells.")
        self.n_obs, self.labelled = int(n_obs), labelled
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0
        drawn = math.ceil(min_drawn_share * self.n_obs - 1e-6)  # a third of 3n is n, not n + 1
        self.steps = max(
            int(min_steps),
            math.ceil(len(labelled) / self.batch_size),
            math.ceil(drawn / self.batch_size),
        )
        self.num_replicas, self.rank = 1, 0
        self.num_samples = self.total_size = self.steps * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` next (Lightning calls this every epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        rounds = math.ceil(self.steps * self.batch_size / len(self.labelled))
        order = np.concatenate([rng.permutation(self.labelled) for _ in range(rounds)])
        for step in range(self.steps):
            labelled = order[step * self.batch_size : (step + 1) * self.batch_size]
            anyone = rng.integers(0, self.n_obs, self.batch_size)
            yield np.concatenate([labelled, anyone])

    def __len__(self) -> int:
        return self.steps
