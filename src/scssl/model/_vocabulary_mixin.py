"""What every scssl model on a gene vocabulary shares: its genes and the alignment of new data."""

from __future__ import annotations

from anndata import AnnData

from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    AlignmentReport,
    GeneVocabulary,
    align_to_vocabulary,
    check_expression,
)


class GeneVocabularyMixin:
    """A model's gene vocabulary and the alignment of new data to it.

    For models registered with ``layer`` and ``log_normalized`` setup arguments that store
    ``gene_vocabulary_``.
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

    def align(
        self, adata: AnnData, min_overlap: float = DEFAULT_MIN_OVERLAP
    ) -> tuple[AnnData, AlignmentReport | None]:
        """``adata`` with the model's genes in the model's order, checked; input left unchanged.

        Returns ``adata`` itself when its genes already are the vocabulary, otherwise a new
        AnnData (missing genes zero-filled, extra genes dropped) and the alignment report.
        """
        layer = self._layer
        report = None
        if not self.gene_vocabulary.matches_exactly(adata):
            adata, report = align_to_vocabulary(
                adata, self.gene_vocabulary, layer=layer, min_overlap=min_overlap
            )
        check_expression(adata, layer, self._log_normalized)
        return adata, report
