"""The training plan, and callbacks and options where scvi-tools' plan does not fit."""

from ._callbacks import LastCheckpoint, TargetNetworkUpdate
from ._distributed import ddp_trainer_kwargs, has_batch_norm, uses_ddp
from ._plan import SSLTrainingPlan
from ._precision import default_precision, native_cpu_bf16

__all__ = [
    "LastCheckpoint",
    "SSLTrainingPlan",
    "TargetNetworkUpdate",
    "ddp_trainer_kwargs",
    "default_precision",
    "has_batch_norm",
    "native_cpu_bf16",
    "uses_ddp",
]
