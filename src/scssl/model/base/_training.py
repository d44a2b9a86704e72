"""Training set-up shared by the scssl models: AdamW plan, early stopping, train/eval modes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from scssl.data._warnings import warn_user

#: Cells per minibatch at inference (embedding, prediction).
DEFAULT_INFERENCE_BATCH_SIZE = 1024


def adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with the fused kernel.

    The fused kernel is several times faster than the default on CPU and GPU alike.
    """
    trainable = [p for p in params if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, fused=True)


def adamw_plan(lr: float, weight_decay: float, plan_kwargs: dict | None) -> dict:
    """``plan_kwargs`` of the training plan that train with :func:`adamw`."""
    creator = partial(adamw, lr=lr, weight_decay=weight_decay)
    return {"optimizer": "Custom", "optimizer_creator": creator, **(plan_kwargs or {})}


def validation_cells(n_cells: int, train_size: float, validation_size: float | None) -> int:
    """Cells scvi-tools' split sets aside for validation."""
    if validation_size is None:
        return n_cells - math.ceil(train_size * n_cells)
    return math.floor(n_cells * validation_size)


def set_early_stopping(
    trainer_kwargs: dict,
    early_stopping: bool,
    patience: int,
    n_validation: int | None = None,
    monitor: str = "validation_loss",
) -> bool:
    """Add early stopping on ``monitor`` to ``trainer_kwargs``; returns whether it is on.

    Without validation cells (``n_validation == 0``: ``train_size=1``, or too few cells to set
    any aside) early stopping is turned off with a warning; ``None``: validation cells come
    from elsewhere (a datamodule).
    """
    if early_stopping and n_validation == 0:
        warn_user(
            "early_stopping needs validation cells, and the split of the cells (train_size, "
            "validation_size, validation_min_cells) leaves none; early stopping is disabled."
        )
        return False
    if early_stopping:
        trainer_kwargs.setdefault("early_stopping_monitor", monitor)
        trainer_kwargs.setdefault("early_stopping_patience", patience)
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    return early_stopping


@contextmanager
def training_mode(module: nn.Module) -> Iterator[None]:
    """Train mode for the duration of the block, eval mode after it (even on errors).

    Inference leaves modules in eval mode, and Lightning keeps the modes it finds.
    """
    module.train()
    try:
        yield
    finally:
        module.eval()


def checkpointing(trainer_kwargs: dict, checkpoint_dir) -> dict:
    """Save ``checkpoint_dir/last.ckpt`` every epoch; check a ``ckpt_path`` before resuming.

    The checkpoint holds the weights, the optimiser's state and the epoch. Lightning reads the
    file it resumes from itself; scssl first opens it with ``torch.load(weights_only=True)``
    so that a file that would run code is refused.
    """
    from scssl.checkpoints import load_torch_weights
    from scssl.train import LastCheckpoint

    kwargs = dict(trainer_kwargs)
    if kwargs.get("ckpt_path") is not None:
        content = load_torch_weights(kwargs["ckpt_path"])
        if "optimizer_states" not in content:
            raise ValueError(
                f"{kwargs['ckpt_path']} is not a training checkpoint (no optimiser state); "
                "resume from the last.ckpt that train(checkpoint_dir=...) writes."
            )
    if checkpoint_dir is not None:
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), LastCheckpoint(checkpoint_dir)]
    return kwargs


@contextmanager
def interruptible(model) -> Iterator[None]:
    """Ctrl+C during training raises ``KeyboardInterrupt``, not Lightning's ``SystemExit``.

    The model keeps the weights of its last step.
    """
    try:
        yield
    except SystemExit as exit_:
        if not isinstance(exit_.__context__, KeyboardInterrupt):
            raise
        model.is_trained_ = True
        raise KeyboardInterrupt(
            "Training was interrupted; the model keeps the weights of its last step. To continue "
            "with the optimiser's state, train with checkpoint_dir=... and resume with "
            "ckpt_path='<checkpoint_dir>/last.ckpt'."
        ) from None


def fit_options(
    trainer_kwargs: dict,
    checkpoint_dir,
    early_stopping: bool,
    patience: int,
    n_validation: int | None,
    monitor: str = "validation_loss",
) -> tuple[dict, bool]:
    """A model's Lightning options: :func:`checkpointing`, then :func:`set_early_stopping`.

    Returns the new ``trainer_kwargs`` and whether early stopping is on.
    """
    trainer_kwargs = checkpointing(trainer_kwargs, checkpoint_dir)
    early_stopping = set_early_stopping(
        trainer_kwargs, early_stopping, patience, n_validation, monitor
    )
    return trainer_kwargs, early_stopping


@contextmanager
def fitting(model) -> Iterator[None]:
    """Where every model trains: :func:`interruptible`, with the module in :func:`training_mode`.

    A model holding weights from elsewhere (``load_query_data``, published weights) has no
    history; scvi-tools would then record none of this run, so it trains as untrained.
    """
    weights_without_history = model.is_trained_ and model.history_ is None
    if weights_without_history:
        model.is_trained_ = False
    try:
        with interruptible(model), training_mode(model.module):
            yield
    finally:
        if weights_without_history:
            model.is_trained_ = True
