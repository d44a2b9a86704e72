"""Training callbacks where scvi-tools' training plan does not fit."""

from ._callbacks import TargetNetworkUpdate

__all__ = ["TargetNetworkUpdate"]
