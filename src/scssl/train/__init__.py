"""Training helpers where scvi-tools' do not fit: distributed-training options."""

from ._distributed import ddp_trainer_kwargs, has_batch_norm, uses_ddp

__all__ = ["ddp_trainer_kwargs", "has_batch_norm", "uses_ddp"]
