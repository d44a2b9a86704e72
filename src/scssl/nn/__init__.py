"""Pure torch building blocks (no AnnData): MLPs, masking, augmentations, contrastive heads."""

from ._adversary import BatchAdversary
from ._augment import AUGMENTATIONS, DropoutNoise, NegBinNoise, View
from ._contrastive import (
    barlow_twins_loss,
    barlow_twins_projector,
    byol_head,
    byol_loss,
    ema_decay,
    ema_update,
)
from ._masking import GeneProgrammeMask, ProgrammeToTFMask, RandomMask
from ._mlp import ACTIVATIONS, DEFAULT_N_HIDDEN, DEFAULT_N_LATENT, SparseInputLinear, mlp

__all__ = [
    "ACTIVATIONS",
    "AUGMENTATIONS",
    "DEFAULT_N_HIDDEN",
    "DEFAULT_N_LATENT",
    "BatchAdversary",
    "DropoutNoise",
    "GeneProgrammeMask",
    "NegBinNoise",
    "ProgrammeToTFMask",
    "RandomMask",
    "SparseInputLinear",
    "View",
    "barlow_twins_loss",
    "barlow_twins_projector",
    "byol_head",
    "byol_loss",
    "ema_decay",
    "ema_update",
    "mlp",
]
