"""Gene vocabularies and the alignment of an AnnData's genes to a model's genes."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._validation import _row_chunks, expression_matrix
from ._warnings import warn_user

logger = logging.getLogger(__name__)

ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")
#: Smallest share of a model's genes that data must have to be aligned to it.
DEFAULT_MIN_OVERLAP = 0.5

SYMBOL_COLUMNS = ("feature_name", "gene_symbols", "gene_symbol", "gene_name", "symbol", "symbols")


def strip_version(ensembl_id: str) -> str:
    """``ENSG00000141510.17`` -> ``ENSG00000141510``."""
    return ensembl_id.split(".", 1)[0]


def _share_ensembl(values) -> float:
    values = pd.Index(values).astype(str)
    if len(values) == 0:
        return 0.0
    return float(np.mean([bool(ENSEMBL_PATTERN.match(v)) for v in values]))


def find_ensembl_ids(var: pd.DataFrame, var_names: pd.Index) -> np.ndarray | None:
    """Ensembl IDs of the genes, from ``var_names`` or a ``var`` column (>= 90% ENSG-like)."""
    if _share_ensembl(var_names) >= 0.9:
        return np.asarray(var_names.astype(str))
    for column in var.columns:
        if var[column].dtype.kind in "OSU" or isinstance(var[column].dtype, pd.CategoricalDtype):
            if _share_ensembl(var[column]) >= 0.9:
                return np.asarray(var[column].astype(str))
    return None


def find_symbols(var: pd.DataFrame, var_names: pd.Index) -> np.ndarray:
    """Gene symbols: ``var_names`` unless they are Ensembl IDs and a symbol column exists."""
    if _share_ensembl(var_names) >= 0.9:
        for column in SYMBOL_COLUMNS:
            if column in var.columns:
                return np.asarray(var[column].astype(str))
    return np.asarray(var_names.astype(str))


@dataclass
class AlignmentReport:
    """How an AnnData's genes matched a model's gene vocabulary."""

    n_vocabulary: int
    n_query_genes: int
    n_matched: int
    matched_by: str
    n_duplicates_ignored: int = 0
    missing_examples: list[str] = field(default_factory=list)
    unused_examples: list[str] = field(default_factory=list)
    n_duplicated_model_genes: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    #: Query genes read (fewer than ``n_matched`` when the vocabulary repeats a gene).
    n_query_used: int | None = None

    @property
    def share(self) -> float:
        """Share of the vocabulary found in the query."""
        return self.n_matched / self.n_vocabulary if self.n_vocabulary else 0.0

    @property
    def n_missing(self) -> int:
        """Vocabulary genes absent from the query (zero-filled)."""
        return self.n_vocabulary - self.n_matched

    @property
    def n_unused(self) -> int:
        """Query genes outside the vocabulary (ignored)."""
        used = self.n_matched if self.n_query_used is None else self.n_query_used
        return self.n_query_genes - used - self.n_duplicates_ignored

    def as_dict(self) -> dict:
        """Plain types, ready for ``adata.uns``."""
        out = asdict(self)
        out.update(share=self.share, n_missing=self.n_missing, n_unused=self.n_unused)
        return out

    def __str__(self) -> str:
        text = (
            f"{self.n_matched} of {self.n_vocabulary} model genes ({self.share:.1%}) matched by "
            f"{self.matched_by}; {self.n_missing} missing genes are zero-filled, {self.n_unused} "
            "genes of the data are not in the model and are ignored"
        )
        if self.n_duplicates_ignored:
            text += f", {self.n_duplicates_ignored} duplicated genes of the data ignored"
        if self.missing_examples:
            text += f". Missing e.g.: {', '.join(self.missing_examples)}"
        if self.unused_examples:
            text += f". Unused e.g.: {', '.join(self.unused_examples)}"
        return text + "."


@dataclass
class GeneVocabulary:
    """The ordered genes a model was built on: symbols, and Ensembl IDs when known."""

    symbols: list[str]
    ensembl_ids: list[str] | None = None

    def __post_init__(self):
        self.symbols = [str(s) for s in self.symbols]
        if self.ensembl_ids is not None:
            self.ensembl_ids = [str(e) for e in self.ensembl_ids]
            if len(self.ensembl_ids) != len(self.symbols):
                raise ValueError(
                    f"{len(self.ensembl_ids)} Ensembl IDs for {len(self.symbols)} symbols."
                )

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def from_adata(cls, adata: ad.AnnData) -> GeneVocabulary:
        """The genes of ``adata`` in their order."""
        ensembl = find_ensembl_ids(adata.var, adata.var_names)
        symbols = find_symbols(adata.var, adata.var_names)
        return cls(list(symbols), None if ensembl is None else list(ensembl))

    def to_dict(self) -> dict:
        """Plain types, for saving with the model."""
        return {"symbols": list(self.symbols), "ensembl_ids": self.ensembl_ids}

    @classmethod
    def from_dict(cls, data: dict) -> GeneVocabulary:
        """Inverse of :meth:`to_dict`."""
        return cls(data["symbols"], data.get("ensembl_ids"))

    def matches_exactly(self, adata: ad.AnnData) -> bool:
        """Whether ``adata`` already has exactly these genes in this order."""
        if adata.n_vars != len(self):
            return False
        names = np.asarray(adata.var_names.astype(str))
        if np.array_equal(names, np.asarray(self.symbols)):
            return True
        return self.ensembl_ids is not None and np.array_equal(names, np.asarray(self.ensembl_ids))

    def source_index(self, adata: ad.AnnData) -> tuple[np.ndarray, AlignmentReport]:
        """For each vocabulary gene, its column in ``adata`` (``-1`` when missing).

        Ensembl IDs (version suffixes stripped) are used when both sides have them; otherwise
        symbols, case-insensitively. A gene that appears twice in ``adata`` is taken from its first
        occurrence; the report counts the others.
        """
        query_ensembl = find_ensembl_ids(adata.var, adata.var_names)
        if self.ensembl_ids is not None and query_ensembl is not None:
            matched_by = "Ensembl ID"
            vocab_keys = [strip_version(e) for e in self.ensembl_ids]
            query_keys = [strip_version(e) for e in query_ensembl]
        else:
            matched_by = "gene symbol"
            vocab_keys = [s.upper() for s in self.symbols]
            query_keys = [s.upper() for s in find_symbols(adata.var, adata.var_names)]

        first_position: dict[str, int] = {}
        n_duplicates = 0
        for position, key in enumerate(query_keys):
            if key in first_position:
                n_duplicates += 1
            else:
                first_position[key] = position
        index = np.array([first_position.get(key, -1) for key in vocab_keys], dtype=np.int64)

        matched = index >= 0
        used = np.zeros(len(query_keys), dtype=bool)
        used[index[matched]] = True
        query_names = np.asarray(adata.var_names.astype(str))
        duplicate_mask = np.ones(len(query_keys), dtype=bool)
        duplicate_mask[list(first_position.values())] = False
        unused = ~used & ~duplicate_mask
        vocab_names = np.asarray(self.symbols)
        vocab_set = set(vocab_keys)
        model_duplicates = list(
            dict.fromkeys(
                str(name)
                for name, key, duplicate in zip(
                    query_names, query_keys, duplicate_mask, strict=True
                )
                if duplicate and key in vocab_set
            )
        )
        report = AlignmentReport(
            n_vocabulary=len(self),
            n_query_genes=len(query_keys),
            n_matched=int(matched.sum()),
            matched_by=matched_by,
            n_duplicates_ignored=n_duplicates,
            missing_examples=[str(g) for g in vocab_names[~matched][:5]],
            unused_examples=[str(g) for g in query_names[unused][:5]],
            n_duplicated_model_genes=len(model_duplicates),
            duplicate_examples=model_duplicates[:5],
            n_query_used=int(used.sum()),
        )
        return index, report


def reindex_columns(matrix, index: np.ndarray):
    """Columns ``index`` of ``matrix`` (``-1`` -> a zero column); sparse stays sparse.

    A backed matrix (``read_h5ad(..., backed="r")``) is read in blocks of rows (as the data
    checks read it); the result is in memory (the ``index`` columns only).
    """
    n_obs = matrix.shape[0]
    n_out = len(index)
    if _is_backed(matrix):
        blocks = [reindex_columns(block, index) for _, block in _row_chunks(matrix)]
        if not blocks:
            return np.zeros((0, n_out), dtype=matrix.dtype)
        return sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.vstack(blocks)
    matched = np.flatnonzero(index >= 0)
    if sp.issparse(matrix):
        selector = sp.csr_matrix(
            (np.ones(len(matched), dtype=matrix.dtype), (index[matched], matched)),
            shape=(matrix.shape[1], n_out),
        )
        out = (sp.csr_matrix(matrix) @ selector).tocsr()
        out.sort_indices()
        return out
    matrix = np.asarray(matrix)
    out = np.zeros((n_obs, n_out), dtype=matrix.dtype)
    out[:, matched] = matrix[:, index[matched]]
    return out


def _is_backed(matrix) -> bool:
    """An on-disk matrix of a backed AnnData (h5py's dense or anndata's sparse dataset).

    Not an in-memory view (anndata's ``ArrayView`` is an ``np.ndarray``).
    """
    if isinstance(matrix, np.ndarray) or sp.issparse(matrix):
        return False
    module = type(matrix).__module__
    return module.startswith(("h5py", "anndata._core.sparse_dataset"))


def align_to_vocabulary(
    adata: ad.AnnData,
    vocabulary: GeneVocabulary,
    *,
    layer: str | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> tuple[ad.AnnData, AlignmentReport]:
    """A new AnnData whose genes are ``vocabulary`` in its order.

    Genes of the vocabulary absent from ``adata`` are zero-filled, genes of ``adata`` outside the
    vocabulary are dropped. ``adata`` itself is not modified; when its genes already are the
    vocabulary, the new AnnData shares its expression matrix instead of copying it.

    Parameters
    ----------
    adata
        The data to align.
    vocabulary
        The model's genes.
    layer
        Layer holding the expression values; ``None`` for ``.X``. The result holds them in ``.X``
        and, when ``layer`` is set, in ``.layers[layer]`` too.
    min_overlap
        Smallest share of vocabulary genes that must be found.

    Raises
    ------
    ValueError
        When fewer than ``min_overlap`` of the vocabulary genes are found.

    """
    index, report = vocabulary.source_index(adata)
    if report.share < min_overlap:
        raise ValueError(
            f"Only {report}\nThis is below the minimum overlap of {min_overlap:.0%}. Check that "
            "the data and the model use the same gene identifiers (symbols or Ensembl IDs, same "
            "species); put Ensembl IDs or symbols in adata.var_names or a var column "
            "('feature_name', 'gene_symbols'), or lower min_overlap if you accept the loss."
        )
    logger.info("Gene alignment: %s", report)
    if report.n_duplicated_model_genes:
        warn_user(
            f"adata.var_names repeats {report.n_duplicated_model_genes} of the model's genes (e.g. "
            f"{', '.join(report.duplicate_examples)}); the model reads the first occurrence of "
            "each and ignores the others. If they are different genes sharing a symbol, put "
            "Ensembl IDs in adata.var_names (or a var column) for an exact match; otherwise "
            "keep one column per gene (adata[:, ~adata.var_names.duplicated()]).",
        )
    matrix = expression_matrix(adata, layer)
    if adata.n_vars == len(index) and np.array_equal(index, np.arange(len(index))):
        aligned_matrix = matrix  # same genes in the same order: share the matrix, never copy
    else:
        aligned_matrix = reindex_columns(matrix, index)
    var = pd.DataFrame(index=pd.Index(vocabulary.symbols, name=None))
    if vocabulary.ensembl_ids is not None:
        var["ensembl_id"] = vocabulary.ensembl_ids
    aligned = ad.AnnData(X=aligned_matrix, obs=adata.obs.copy(), var=var)
    if layer is not None:
        aligned.layers[layer] = aligned.X
    aligned.obsm.update({k: v for k, v in adata.obsm.items()})
    return aligned, report


def placeholder_anndata(
    vocabulary: GeneVocabulary,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    batch_categories=None,
) -> ad.AnnData:
    """A stand-in for a model set up without user data: one count per vocabulary gene.

    One cell, or one cell per batch of ``batch_categories`` (in ``obs[batch_key]``, with those
    categories in that order); the counts also in ``layers[layer]`` when a layer is named.
    """
    symbols = pd.Index(vocabulary.symbols)
    if vocabulary.ensembl_ids is not None and pd.Index(vocabulary.ensembl_ids).is_unique:
        var = pd.DataFrame({"feature_name": vocabulary.symbols}, index=vocabulary.ensembl_ids)
    else:
        var = pd.DataFrame({"feature_name": vocabulary.symbols}, index=symbols)
        if not symbols.is_unique:
            var.index = ad.utils.make_index_unique(symbols)
    batches = [str(b) for b in batch_categories] if batch_key is not None else ["placeholder"]
    adata = ad.AnnData(
        X=np.ones((len(batches), len(vocabulary)), dtype=np.float32),
        obs=pd.DataFrame(index=[f"placeholder-{i}" for i in range(len(batches))]),
        var=var,
    )
    if layer is not None:
        adata.layers[layer] = adata.X.copy()
    if batch_key is not None:
        adata.obs[batch_key] = pd.Categorical(batches, categories=batches)
    adata.uns["scssl_placeholder"] = True
    return adata


def warn_ambiguous_symbols(vocabulary: GeneVocabulary, adata: ad.AnnData) -> None:
    """Symbols shared by several checkpoint genes are ambiguous when matching by symbol."""
    by_ensembl = find_ensembl_ids(adata.var, adata.var_names) is not None
    if vocabulary.ensembl_ids is not None and by_ensembl:
        return
    upper = pd.Index([s.upper() for s in vocabulary.symbols])
    duplicated = upper[upper.duplicated()].unique()
    if len(duplicated):
        logger.warning(
            "%d symbols name several genes of the checkpoint (e.g. %s); matching by symbol feeds "
            "each such gene of your data into all of them. Put Ensembl IDs in adata.var_names or "
            "a var column for an exact match.",
            len(duplicated),
            ", ".join(duplicated[:5]),
        )
