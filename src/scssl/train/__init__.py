"""Training callbacks and options where scvi-tools' training plan does not fit."""

from ._callbacks import LastCheckpoint, TargetNetworkUpdate
from ._distributed import ddp_trainer_kwargs, has_batch_norm, uses_ddp

__all__ = [
    "LastCheckpoint",
    "TargetNetworkUpdate",
    "ddp_trainer_kwargs",
    "has_batch_norm",
    "uses_ddp",
]
