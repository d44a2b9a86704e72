"""What every scssl tool writes to ``.uns``, the scanpy way (one rule for all ``scssl.tl``)."""

from __future__ import annotations

from scssl._version import __version__


def uns_key(written: str) -> str:
    """The ``.uns`` key of a tool's parameters: the name of what it wrote, without ``"X_"``.

    As ``sc.tl.umap`` keeps ``X_umap``'s parameters in ``uns["umap"]``: ``"X_scssl"`` ->
    ``"scssl"``, ``"prot_pred"`` -> ``"prot_pred"``. Two calls with different keys never
    overwrite each other's parameters.
    """
    return written[2:] if written.startswith("X_") and len(written) > 2 else written


def tool_params(model, **params) -> dict:
    """A tool call's ``params``: its options, the model's class and the scssl version."""
    return {
        **params,
        "model": None if model is None else type(model).__name__,
        "scssl_version": __version__,
    }


def alignment_info(model, report) -> dict:
    """The gene alignment report as a dict (an exact match when the model returned none)."""
    if report is not None:
        return report.as_dict()
    n_vocab = len(model.gene_vocabulary)
    return {"n_vocabulary": n_vocab, "n_matched": n_vocab, "share": 1.0, "matched_by": "exact"}
