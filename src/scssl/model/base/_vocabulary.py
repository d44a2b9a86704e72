"""What every scssl model on a gene vocabulary shares: its genes and the alignment of new data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    AlignmentReport,
    GeneVocabulary,
    align_to_vocabulary,
    check_expression,
)


class GeneVocabularyMixin:
    """A model's gene vocabulary, the alignment of new data to it, and cell selection.

    For models that store ``gene_vocabulary_`` and register their expression matrix with
    ``layer`` and ``log_normalized`` setup arguments (a model whose expression lives elsewhere,
    e.g. in a MuData modality, overrides :meth:`_expression_data` and :attr:`_layer`).
    """

    @property
    def gene_vocabulary(self) -> GeneVocabulary:
        """The genes the model was built on, in the order of its input layer."""
        return GeneVocabulary.from_dict(self.gene_vocabulary_)

    @property
    def _layer(self) -> str | None:
        return self.registry_["setup_args"]["layer"]

    @property
    def _log_normalized(self) -> bool:
        return self.registry_["setup_args"]["log_normalized"]

    def _expression_data(self, data) -> AnnData:
        """The AnnData whose expression the model reads (``data`` itself for AnnData models)."""
        if not isinstance(data, AnnData):
            raise TypeError(f"Expected an AnnData, got {type(data).__name__}.")
        return data

    def align(
        self, adata, min_overlap: float = DEFAULT_MIN_OVERLAP
    ) -> tuple[AnnData, AlignmentReport | None]:
        """The cells of ``adata`` with the model's genes in the model's order, checked.

        Returns an AnnData (``adata`` itself when its genes already are the vocabulary,
        otherwise a new one: missing genes zero-filled, extra genes dropped) and the alignment
        report (``None`` when nothing had to be aligned). ``adata`` is not modified.
        """
        expression = self._expression_data(adata)
        report = None
        if not self.gene_vocabulary.matches_exactly(expression):
            expression, report = align_to_vocabulary(
                expression, self.gene_vocabulary, layer=self._layer, min_overlap=min_overlap
            )
        check_expression(expression, self._layer, self._log_normalized)
        return expression, report

    def _cells(
        self, adata, indices: Sequence[int] | np.ndarray | None, min_overlap: float
    ) -> tuple[AnnData, np.ndarray]:
        """The aligned data (the registered AnnData for ``None``) and the positions to use."""
        if adata is None or adata is self.adata:
            adata = self._expression_data(self.adata)
        else:
            adata = self.align(adata, min_overlap=min_overlap)[0]
        indices = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        return adata, indices


def batch_codes(values, known: Sequence, key: str, hint: str = "") -> np.ndarray:
    """Position of each value in ``known`` (a model's batches); unknown batches are an error."""
    lookup = {str(c): i for i, c in enumerate(known)}
    values = np.asarray([str(v) for v in np.asarray(values).tolist()], dtype=object)
    unknown = sorted(set(values) - set(lookup))
    if unknown:
        hint = hint or " Give these cells one of the known batches."
        raise ValueError(
            f"obs[{key!r}] has batches the model was not trained on: {unknown[:5]}. Known "
            f"batches: {list(lookup)}.{hint}"
        )
    return np.array([lookup[v] for v in values], dtype=np.int64)
