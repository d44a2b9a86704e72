"""``scssl.tl.predict_protein``: surface proteins from RNA, written back the scanpy/muon way."""

from __future__ import annotations

import logging

import anndata as ad
import pandas as pd
from mudata import MuData

from scssl.data import DEFAULT_MIN_OVERLAP
from scssl.model._mudata import quiet_mudata

from ._uns import alignment_info, tool_params, uns_key

logger = logging.getLogger(__name__)


def predict_protein(
    data: MuData | ad.AnnData,
    model,
    *,
    key_added: str = "prot_pred",
    batch_size: int | None = None,
    transform_batch: str | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    copy: bool = False,
) -> MuData | ad.AnnData | None:
    """Predict surface proteins from RNA with a trained :class:`~scssl.model.SSLProteinPredictor`.

    The RNA genes are aligned to the model's gene vocabulary (missing genes zero-filled);
    the expression matrices are not modified. Predictions are ``log1p`` protein counts.

    Parameters
    ----------
    data
        A MuData with the model's RNA modality (e.g. ``"rna"``; proteins need not be there), or
        an AnnData of RNA counts.
    model
        A trained :class:`~scssl.model.SSLProteinPredictor`.
    key_added
        Name of the new modality (MuData) or of the ``.obsm`` entry (AnnData).
    batch_size
        Cells per minibatch.
    transform_batch
        For a model with a batch covariate: predict every cell as if from this batch (otherwise
        each cell's batch is read from its ``obs``).
    min_overlap
        Smallest share of the model's genes that must be found.
    copy
        Return a copy instead of writing into ``data``.

    Returns
    -------
    ``None``, or a copy of ``data`` when ``copy=True``. Sets, for a MuData:

    ``data.mod[key_added]``
        AnnData of the RNA cells x predicted proteins (protein names as ``var_names``),
        ``log1p`` counts in ``.X``; its ``.uns[key]`` holds the call's information too.

    and for an AnnData:

    ``data.obsm[key_added]``
        DataFrame of cells x proteins (``log1p`` counts).

    In both cases ``data.uns[key]`` (``key`` is ``key_added`` without an ``"X_"`` prefix, so
    ``"prot_pred"``) holds the call's ``params`` and the gene ``alignment`` report.

    Examples
    --------
    >>> scssl.tl.predict_protein(mdata_rna_only, model)
    >>> mdata_rna_only["prot_pred"].to_df()

    """
    _check_arguments(data, model, key_added)
    data = data.copy() if copy else data
    aligned, report = model.align(data, min_overlap=min_overlap)
    prediction = model.predict_protein(
        aligned,
        batch_size=batch_size,
        transform_batch=transform_batch,
    )
    info = {
        "params": tool_params(
            model,
            key_added=key_added,
            proteins=list(model.protein_names),
            values="log1p protein counts",
            transform_batch=transform_batch,
            min_overlap=min_overlap,
        ),
        "alignment": alignment_info(model, report),
    }
    if isinstance(data, MuData):
        _write_modality(data, key_added, prediction, info)
    else:
        data.obsm[key_added] = prediction
    data.uns[uns_key(key_added)] = info
    logger.info("Proteins of %d cells written to %r.", len(prediction), key_added)
    return data if copy else None


def _check_arguments(data, model, key_added: str) -> None:
    if not isinstance(data, MuData | ad.AnnData):
        raise TypeError(f"data must be a MuData or an AnnData, got {type(data).__name__}.")
    if not hasattr(model, "predict_protein"):
        raise TypeError(
            f"model must be a trained scssl.model.SSLProteinPredictor, got {type(model).__name__}."
        )
    if isinstance(data, MuData) and key_added == model.rna_key:
        raise ValueError(
            f"key_added={key_added!r} is the RNA modality the proteins are predicted from; "
            "choose another name."
        )


def _write_modality(mdata: MuData, key: str, prediction: pd.DataFrame, info: dict) -> None:
    """The predictions as a new modality ``key`` of cells x proteins."""
    if key in mdata.mod:
        logger.info("Replacing the modality %r.", key)
    predicted = ad.AnnData(
        X=prediction.to_numpy(),
        obs=pd.DataFrame(index=prediction.index),
        var=pd.DataFrame(index=pd.Index(prediction.columns)),
    )
    predicted.uns[uns_key(key)] = info
    with quiet_mudata():  # mudata's legacy update cannot order such names, the current one can
        mdata.mod[key] = predicted
        mdata.update()
