"""Gene sets (GMT files or dicts) and their encoding onto a model's gene vocabulary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ._vocabulary import GeneVocabulary

logger = logging.getLogger(__name__)

BUILTIN_GENE_SETS = {"hallmark": "h.all.v7.5.1.symbols.gmt"}

GeneSets = dict[str, list[str]]


def read_gmt(path: str | Path) -> GeneSets:
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    Parameters
    ----------
    path
        The GMT file.

    Returns
    -------
    ``{set name: [genes]}`` in file order; genes keep their order, repeats within a set dropped.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file holds no gene set, a line has no gene, or a set name appears twice.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Gene set file {path} does not exist.")
    gene_sets: GeneSets = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = [field.strip() for field in line.rstrip("\n\r").split("\t")]
            if not any(fields):
                continue
            name, genes = fields[0], [gene for gene in fields[2:] if gene]
            if not genes:
                raise ValueError(
                    f"{path}, line {line_number}: gene set {name!r} lists no genes. A GMT line is "
                    "'name<TAB>description<TAB>gene1<TAB>gene2...' (tab-separated)."
                )
            if name in gene_sets:
                raise ValueError(
                    f"{path}, line {line_number}: gene set {name!r} appears twice; gene set "
                    "names must be unique. Merge or rename the duplicated sets."
                )
            gene_sets[name] = list(dict.fromkeys(genes))
    if not gene_sets:
        raise ValueError(f"{path} holds no gene set (the file is empty).")
    return gene_sets


def load_gene_sets(gene_sets: str | Path | GeneSets) -> GeneSets:
    """Gene sets from a built-in name (``"hallmark"``), a GMT path or a dict.

    Raises
    ------
    ValueError
        For an empty dict, a set without genes or genes that are not strings.

    """
    if isinstance(gene_sets, dict):
        if not gene_sets:
            raise ValueError("gene_sets is an empty dict; give at least one gene set.")
        checked: GeneSets = {}
        for name, genes in gene_sets.items():
            if isinstance(genes, str) or not all(isinstance(gene, str) for gene in genes):
                raise ValueError(
                    f"gene set {name!r} must be a list of gene symbols (strings), got {genes!r}."
                )
            if not genes:
                raise ValueError(f"gene set {name!r} lists no genes.")
            checked[str(name)] = list(dict.fromkeys(genes))
        return checked
    if isinstance(gene_sets, str) and gene_sets.lower() in BUILTIN_GENE_SETS:
        filename = BUILTIN_GENE_SETS[gene_sets.lower()]
        with resources.as_file(resources.files("scssl.data") / "gene_sets" / filename) as path:
            return read_gmt(path)
    if isinstance(gene_sets, str | Path):
        return read_gmt(gene_sets)
    raise TypeError(
        "gene_sets must be 'hallmark', the path of a GMT file or a dict {name: [genes]}, "
        f"got {type(gene_sets).__name__}."
    )


@dataclass(frozen=True)
class EncodedGeneSets:
    """Gene sets as column indices of a model's gene vocabulary.

    Attributes
    ----------
    names
        Names of the sets with at least one matched gene (or, for TF programmes, the TFs kept).
    members
        Boolean matrix ``(n_sets, n_genes)``: gene ``j`` belongs to set ``i``.
    anchors
        For TF programmes, the vocabulary index of each set's TF; ``None`` otherwise.

    """

    names: list[str]
    members: np.ndarray
    anchors: np.ndarray | None = None


def _symbol_index(vocabulary: GeneVocabulary) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, symbol in enumerate(vocabulary.symbols):
        index.setdefault(str(symbol).upper(), position)
    return index


def encode_gene_sets(gene_sets: GeneSets, vocabulary: GeneVocabulary) -> EncodedGeneSets:
    """Match gene sets to a vocabulary by symbol (case-insensitive).

    Sets without any matched gene are dropped; the counts are logged.

    Raises
    ------
    ValueError
        When no gene of any set is in the vocabulary.

    """
    index = _symbol_index(vocabulary)
    names, rows = [], []
    n_listed = len({gene.upper() for genes in gene_sets.values() for gene in genes})
    for name, genes in gene_sets.items():
        columns = sorted({index[gene.upper()] for gene in genes if gene.upper() in index})
        if columns:
            row = np.zeros(len(vocabulary.symbols), dtype=bool)
            row[columns] = True
            names.append(name)
            rows.append(row)
    if not rows:
        raise ValueError(
            f"None of the {n_listed} genes of the {len(gene_sets)} gene sets is in the model's "
            f"{len(vocabulary.symbols)} genes (matched by symbol, case-insensitive; vocabulary "
            f"starts {list(vocabulary.symbols[:3])}). Gene sets must use gene symbols of the "
            "same species as the data."
        )
    members = np.stack(rows)
    logger.info(
        "Gene sets: %d of %d sets matched, covering %d of %d listed genes.",
        len(names),
        len(gene_sets),
        int(members.any(axis=0).sum()),
        n_listed,
    )
    return EncodedGeneSets(names=names, members=members)


def encode_tf_programmes(
    tf_targets: GeneSets, vocabulary: GeneVocabulary, min_targets: int = 5
) -> EncodedGeneSets:
    """Match TF -> targets programmes (set name = TF symbol) to a vocabulary.

    A programme is kept when its TF is in the vocabulary and at least ``min_targets`` of its
    targets (other than the TF itself) are.

    Raises
    ------
    ValueError
        When no programme qualifies.

    """
    index = _symbol_index(vocabulary)
    names, rows, anchors = [], [], []
    for tf, targets in tf_targets.items():
        tf_column = index.get(tf.upper())
        if tf_column is None:
            continue
        columns = sorted(
            {index[gene.upper()] for gene in targets if gene.upper() in index} - {tf_column}
        )
        if len(columns) >= min_targets:
            row = np.zeros(len(vocabulary.symbols), dtype=bool)
            row[columns] = True
            names.append(tf)
            rows.append(row)
            anchors.append(tf_column)
    n_tf_present = sum(tf.upper() in index for tf in tf_targets)
    if not rows:
        raise ValueError(
            f"No TF programme qualifies: {n_tf_present} of {len(tf_targets)} TFs are in the "
            f"model's genes, none with at least min_targets={min_targets} targets present. "
            "Check that the set names are TF symbols, or lower min_targets."
        )
    logger.info(
        "TF programmes: %d of %d TFs kept (%d in the vocabulary, min_targets=%d).",
        len(names),
        len(tf_targets),
        n_tf_present,
        min_targets,
    )
    return EncodedGeneSets(names=names, members=np.stack(rows), anchors=np.asarray(anchors))


def pretext_programmes(
    pretext: str, gene_sets, vocabulary: GeneVocabulary, min_targets: int
) -> tuple[dict[str, list[str]] | None, EncodedGeneSets | None]:
    """The gene sets a pretext needs, as a plain dict (saved with the model) and encoded.

    ``gene_programme_mask`` defaults to the built-in Hallmark sets; ``programme_to_tf`` needs
    TF -> targets sets; other pretexts take none.
    """
    if pretext not in ("gene_programme_mask", "programme_to_tf"):
        if gene_sets is not None:
            raise ValueError(
                f"gene_sets is used by pretext='gene_programme_mask' or 'programme_to_tf', not "
                f"{pretext!r}; drop gene_sets or choose one of those pretexts."
            )
        return None, None
    if gene_sets is None:
        if pretext == "programme_to_tf":
            raise ValueError(
                "pretext='programme_to_tf' needs gene_sets=: TF -> target programmes (a GMT path "
                "or a dict {TF symbol: [target symbols]}), e.g. CollecTRI regulons."
            )
        gene_sets = "hallmark"
    gene_sets = load_gene_sets(gene_sets)
    if pretext == "gene_programme_mask":
        return gene_sets, encode_gene_sets(gene_sets, vocabulary)
    return gene_sets, encode_tf_programmes(gene_sets, vocabulary, min_targets)
