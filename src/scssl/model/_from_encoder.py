"""Downstream models started from a pretrained SSLEncoder: its checks and the weight copy."""

from __future__ import annotations


def checked_encoder(encoder) -> dict:
    """The architecture of a trained SSLEncoder (for the downstream model's constructor)."""
    if not hasattr(encoder, "module") or not hasattr(encoder.module, "architecture"):
        raise TypeError(
            f"encoder must be a trained scssl.model.SSLEncoder, got {type(encoder).__name__}."
        )
    encoder._check_if_trained(warn=True)
    return dict(encoder.module.architecture)


def copy_encoder(model, encoder) -> None:
    """Give ``model`` the encoder's weights and gene vocabulary (the encoder is not changed)."""
    model.module.encoder.load_state_dict(encoder.module.encoder.state_dict())
    model.gene_vocabulary_ = dict(encoder.gene_vocabulary_)
