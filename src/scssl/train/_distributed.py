"""Lightning options for distributed (DDP) training of scssl modules."""

from __future__ import annotations

import torch
from torch import nn

from scssl.data._warnings import warn_user

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def uses_ddp(strategy) -> bool:
    """Whether a Lightning ``strategy`` (name or object) is a DDP variant."""
    if strategy is None:
        return False
    if isinstance(strategy, str):
        return "ddp" in strategy
    from lightning.pytorch.strategies import DDPStrategy

    return isinstance(strategy, DDPStrategy)


def has_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` holds batch-norm layers (e.g. BYOL / Barlow Twins projectors)."""
    return any(isinstance(m, _BATCH_NORMS) for m in module.modules())


def ddp_trainer_kwargs(module: nn.Module, accelerator, trainer_kwargs: dict) -> dict:
    """``trainer_kwargs`` completed for DDP: synchronised batch norm where it can run.

    Under DDP each rank normalises its own minibatch; with ``sync_batchnorm=True`` Lightning
    swaps batch-norm layers for :class:`torch.nn.SyncBatchNorm`, whose statistics span all
    ranks (the effective batch). torch runs it on GPUs only, so on CPU the per-rank statistics
    are kept, with a warning. Buffers (running statistics) are broadcast from rank 0 by DDP
    either way. An explicit ``sync_batchnorm`` in ``trainer_kwargs`` is left as it is.
    """
    kwargs = dict(trainer_kwargs)
    if not uses_ddp(kwargs.get("strategy")) or not has_batch_norm(module):
        return kwargs
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if "sync_batchnorm" not in kwargs:
        if on_cpu:
            warn_user(
                "DDP on CPU: batch-norm statistics are computed per rank (torch's "
                "SyncBatchNorm needs GPUs)."
            )
        else:
            kwargs["sync_batchnorm"] = True
    return kwargs
