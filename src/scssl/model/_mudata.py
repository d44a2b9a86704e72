"""CITE-seq MuData for SSLProteinPredictor: which modality holds what, checked before setup."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import mudata
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scssl.data import (
    GeneVocabulary,
    align_to_vocabulary,
    check_expression_matrix,
    check_unique_var_names,
    expression_matrix,
)

DEFAULT_MODALITIES = {"rna_layer": "rna", "protein_layer": "prot"}
ROLES = ("rna_layer", "protein_layer", "batch_key")


@contextmanager
def quiet_mudata() -> Iterator[None]:
    """Build or update a MuData of scssl's own without mudata's notices about it.

    Protein names may equal gene names (CD19 gene and CD19 protein) and genes may repeat: mudata
    warns that such names are not unique and cannot be joined, and (before 0.4) that ``update``
    will stop pulling columns. None of it is the user's to act on.
    """
    with warnings.catch_warnings(), mudata.set_options(pull_on_update=False):
        for message in (".*not unique.*", ".*var_names are intersecting.*"):
            warnings.filterwarnings("ignore", message=message)
        yield


def where(modality: str, layer: str | None) -> str:
    """How a user addresses a modality's matrix, for messages."""
    base = f"mdata.mod[{modality!r}]"
    return f"{base}.X" if layer is None else f"{base}.layers[{layer!r}]"


def modality(mdata: MuData, key: str, role: str) -> AnnData:
    """``mdata.mod[key]``, with a clear error naming the role when it is missing."""
    if key not in mdata.mod:
        raise KeyError(
            f"The {role} modality {key!r} is not in the MuData (modalities: {list(mdata.mod)}). "
            f"Name it in modalities={{'{role}_layer': ...}} (or rna=/protein= in from_encoder)."
        )
    return mdata.mod[key]


def checked_modalities(mdata, modalities: dict[str, str] | None) -> dict[str, str]:
    """The roles of the modalities, checked: RNA and protein named, different, present."""
    if isinstance(mdata, AnnData) or not isinstance(mdata, MuData):
        raise TypeError(
            f"setup_mudata needs a MuData, got {type(mdata).__name__}. Build one with "
            "mudata.MuData({'rna': rna_adata, 'prot': protein_adata})."
        )
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    missing_roles = [r for r in ROLES[:2] if r not in modalities]
    if missing_roles:
        raise ValueError(
            f"modalities={modalities} lacks {missing_roles}; e.g. "
            "modalities={'rna_layer': 'rna', 'protein_layer': 'prot'}."
        )
    unknown_roles = set(modalities) - set(ROLES)
    if unknown_roles:
        raise ValueError(
            f"modalities has unknown keys {sorted(unknown_roles)}; use 'rna_layer', "
            "'protein_layer' and 'batch_key'."
        )
    if modalities["rna_layer"] == modalities["protein_layer"]:
        raise ValueError(
            f"The RNA and protein modalities must differ; both are {modalities['rna_layer']!r}. "
            f"Name the modality with the protein counts (the MuData has {list(mdata.mod)}): "
            "protein=... in from_encoder, or modalities={'rna_layer': ..., 'protein_layer': ...}"
            " in setup_mudata."
        )
    return modalities


def check_same_cells(mdata: MuData, rna: AnnData, protein: AnnData, modalities: dict) -> None:
    """RNA and proteins of the same cells, in the same order, and no cell without them."""
    if rna.n_obs != protein.n_obs or not rna.obs_names.equals(protein.obs_names):
        raise ValueError(
            f"The RNA modality {modalities['rna_layer']!r} ({rna.n_obs} cells) and the protein "
            f"modality {modalities['protein_layer']!r} ({protein.n_obs} cells) must hold the "
            "same cells in the same order. Keep the cells they share, e.g. with "
            "muon.pp.intersect_obs(mdata)."
        )
    if mdata.n_obs != rna.n_obs:
        raise ValueError(
            f"The MuData has {mdata.n_obs} cells but its RNA modality {rna.n_obs}; every "
            "cell needs RNA and protein measurements (muon.pp.intersect_obs(mdata))."
        )


def remove_empty_cells(key: str) -> str:
    """How to drop the cells without counts in one modality from the whole MuData."""
    return f"mdata = mdata[keep].copy(), keep marking the cells with counts in mdata.mod[{key!r}]"


def check_rna(rna: AnnData, key: str, layer: str | None, log_normalized: bool) -> None:
    """RNA counts (or log-normalised values) and unique gene names."""
    check_expression_matrix(
        expression_matrix(rna, layer, f"mdata.mod[{key!r}]"),
        log_normalized=log_normalized,
        where=where(key, layer),
        counts_hint=(
            "put the raw RNA counts in {where}, or name the layer of "
            f"mdata.mod[{key!r}] that holds them (rna_layer='counts')"
        ),
        log_hint="if the values are normalize_total + log1p, pass log_normalized=True",
        remove_empty=remove_empty_cells(key),
    )
    check_unique_var_names(rna.var_names, where=f"mdata.mod[{key!r}].var_names")


def check_proteins(protein: AnnData, key: str, layer: str | None) -> None:
    """Raw antibody counts under unique protein names."""
    check_expression_matrix(
        expression_matrix(protein, layer, f"mdata.mod[{key!r}]"),
        where=where(key, layer),
        counts_hint=(
            "proteins must be raw antibody (ADT) counts, as SSLProteinPredictor predicts log1p "
            "counts; CLR- or log-normalised protein values are not supported. Put the raw "
            f"counts in {{where}}, or name the layer of mdata.mod[{key!r}] that holds them "
            "(protein_layer='counts')"
        ),
        log_hint=None,
        empty_effect="the model learns that their RNA comes with no protein at all",
        remove_empty=remove_empty_cells(key),
    )
    duplicated = protein.var_names[protein.var_names.duplicated()]
    if len(duplicated):
        raise ValueError(
            f"mdata.mod[{key!r}] has duplicated protein names "
            f"({', '.join(map(str, duplicated.unique()[:5]))}); predictions are named by "
            f"protein. Make them unique, e.g. mdata.mod[{key!r}].var_names_make_unique()."
        )


def check_batch_column(mdata: MuData, batch_key: str | None, batch_mod: str | None) -> None:
    """The batch column exists (in ``mdata.obs`` or the named modality) without gaps."""
    if batch_key is None:
        return
    obs = mdata.obs if batch_mod is None else modality(mdata, batch_mod, "batch").obs
    name = "mdata.obs" if batch_mod is None else f"mdata.mod[{batch_mod!r}].obs"
    if batch_key not in obs:
        raise KeyError(
            f"batch_key={batch_key!r} is not a column of {name} (columns: "
            f"{list(obs.columns)}). Put it there or name its modality in "
            "modalities={'batch_key': ...}."
        )
    if obs[batch_key].isna().any():
        n_missing = int(obs[batch_key].isna().sum())
        raise ValueError(
            f"{name}[{batch_key!r}] has {n_missing} missing (NaN) values; give every cell a "
            "batch, or drop the cells without one."
        )


def rna_with_obs(data, rna_key: str, batch_modality: str | None = None) -> AnnData:
    """The RNA of a MuData (with the cells' joint ``obs``), or an AnnData of RNA as it is.

    A column both in the MuData's ``obs`` and in the RNA modality's is taken from the MuData's,
    where :meth:`~scssl.model.SSLProteinPredictor.setup_mudata` reads ``batch_key`` by default;
    from the RNA modality's when ``batch_modality`` (``modalities["batch_key"]``) names it.
    """
    if isinstance(data, MuData):
        rna = data.mod.get(rna_key)
        if rna is None:
            raise KeyError(
                f"The MuData has no RNA modality {rna_key!r} (modalities: {list(data.mod)}); "
                f"the model predicts proteins from it. Name the RNA modality {rna_key!r}, as "
                "when the model was trained, or pass the RNA AnnData itself."
            )
        joint = data.obs.loc[rna.obs_names] if rna.n_obs != data.n_obs else data.obs
        joint = joint.set_axis(rna.obs_names)
        if batch_modality == rna_key:
            joint = joint.drop(columns=rna.obs.columns, errors="ignore")
        obs = pd.concat([rna.obs.drop(columns=joint.columns, errors="ignore"), joint], axis=1)
        return AnnData(X=rna.X, obs=obs, var=rna.var, layers=dict(rna.layers))
    if isinstance(data, AnnData):
        return data
    raise TypeError(f"Expected a MuData or an AnnData of RNA counts, got {type(data).__name__}.")


def with_aligned_rna(
    mdata: MuData, rna_key: str, vocabulary: GeneVocabulary, layer: str | None, min_overlap: float
):
    """``mdata`` itself when its RNA genes are ``vocabulary``; else a new MuData, RNA aligned.

    Returns the MuData and the alignment report (``None`` when nothing was aligned).
    """
    rna = mdata.mod[rna_key]
    if vocabulary.matches_exactly(rna):
        return mdata, None
    aligned, report = align_to_vocabulary(rna, vocabulary, layer=layer, min_overlap=min_overlap)
    mods = {key: mdata.mod[key] for key in mdata.mod if key != rna_key}
    mods[rna_key] = aligned
    with quiet_mudata():
        target = MuData(mods)
    for column in mdata.obs.columns:
        if column not in target.obs:
            target.obs[column] = mdata.obs[column].reindex(target.obs_names)
    return target, report
