"""Pure torch building blocks (no AnnData): MLPs, sparse first layer, masking strategies."""

from ._masking import RandomMask
from ._mlp import ACTIVATIONS, SparseInputLinear, mlp

__all__ = ["ACTIVATIONS", "RandomMask", "SparseInputLinear", "mlp"]
