"""Gene lists that give the input order of a published checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scssl.data import GeneVocabulary

ID_COLUMNS = ("feature_id", "ensembl_id", "gene_id", "gene_ids")
SYMBOL_COLUMNS = ("feature_name", "gene_symbol", "gene_symbols", "gene_name", "symbol")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet"):
        try:
            return pd.read_parquet(path)
        except ImportError as error:  # pragma: no cover - pyarrow is a dependency
            raise ImportError(
                "Reading a parquet gene list needs pyarrow: pip install pyarrow"
            ) from error
    if suffix.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return pd.read_csv(path, sep="\t")
    if suffix.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path)
    raise ValueError(
        f"Cannot read the gene list {path}: use a .parquet, .csv or .tsv file with the columns "
        "'feature_id' (Ensembl ID) and 'feature_name' (symbol), one row per input gene in "
        "checkpoint order."
    )


def _pick(frame: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    lower = {str(c).lower(): c for c in frame.columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def read_gene_list(genes) -> GeneVocabulary:
    """The ordered genes a checkpoint was trained on.

    Parameters
    ----------
    genes
        A ``.parquet``/``.csv``/``.tsv`` file (the study's ``var.parquet``) or a DataFrame with
        the columns ``feature_id`` (Ensembl ID) and/or ``feature_name`` (symbol), one row per
        input gene in checkpoint order; a :class:`~scssl.data.GeneVocabulary`; or a list of
        symbols.

    Raises
    ------
    ValueError
        When the table has neither an Ensembl ID nor a symbol column, or has missing values.

    """
    if isinstance(genes, GeneVocabulary):
        return genes
    if isinstance(genes, str | Path):
        path = Path(genes)
        if not path.is_file():
            raise FileNotFoundError(f"Gene list {path} does not exist.")
        frame = _read_table(path)
        where = str(path)
    elif isinstance(genes, pd.DataFrame):
        frame, where = genes, "the gene table"
    elif isinstance(genes, Sequence | pd.Index):
        return GeneVocabulary([str(g) for g in genes])
    else:
        raise TypeError(
            f"genes must be a file path, a DataFrame, a GeneVocabulary or a list of symbols, "
            f"not {type(genes).__name__}."
        )
    id_column = _pick(frame, ID_COLUMNS)
    symbol_column = _pick(frame, SYMBOL_COLUMNS)
    if id_column is None and symbol_column is None:
        raise ValueError(
            f"{where} has columns {list(frame.columns)}; expected 'feature_id' (Ensembl ID) "
            "and 'feature_name' (symbol)."
        )
    for column in (id_column, symbol_column):
        if column is not None and frame[column].isna().any():
            raise ValueError(
                f"{where}: column {column!r} has {int(frame[column].isna().sum())} missing values."
            )
    ids = None if id_column is None else frame[id_column].astype(str).tolist()
    symbols = frame[symbol_column].astype(str).tolist() if symbol_column is not None else list(ids)
    return GeneVocabulary(symbols, ids)
