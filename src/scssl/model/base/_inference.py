"""One inference path for every scssl model: cells in, minibatches through the module, rows out.

As scvi-tools' ``VAEMixin`` writes ``get_latent_representation`` once, each scssl model only
says how a minibatch of its aligned cells becomes an output (:meth:`_embedder`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from scssl.data import DEFAULT_MIN_OVERLAP, expression_matrix, iterate_minibatches

from ._training import DEFAULT_INFERENCE_BATCH_SIZE

#: ``(positions of the minibatch's cells, their counts on the model's device) -> output rows``
MinibatchStep = Callable[[np.ndarray, torch.Tensor], torch.Tensor]


class InferenceMixin:
    """Minibatch inference for models with a gene vocabulary (see ``GeneVocabularyMixin``)."""

    @torch.inference_mode()
    def _map_minibatches(
        self, adata, indices: np.ndarray, step: MinibatchStep, width: int, batch_size: int | None
    ) -> np.ndarray:
        """``step`` over minibatches of ``adata``'s cells at ``indices``, in eval mode.

        A cell's output never depends on the other cells of its minibatch. Returns
        ``(len(indices), width)`` float32.
        """
        matrix = expression_matrix(adata, self._layer)
        self.module.eval()
        device = self.device
        outputs = [
            step(chunk, x.to(device)).float().cpu()
            for chunk, x in iterate_minibatches(
                matrix, indices, batch_size or DEFAULT_INFERENCE_BATCH_SIZE
            )
        ]
        if not outputs:
            return np.zeros((0, width), dtype=np.float32)
        return torch.cat(outputs).numpy()

    def _embedder(self, adata) -> MinibatchStep:
        """How a minibatch of ``adata`` (aligned) becomes embeddings."""
        return lambda chunk, x: self.module.embed(x)

    def get_latent_representation(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        *,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> np.ndarray:
        """Embedding of each cell, shape ``(n_cells, n_latent)``.

        Eval mode (no dropout, no masking): the same cell always gets the same embedding,
        whichever cells share its minibatch. Data with other genes are aligned to the model's
        gene vocabulary first (missing genes zero-filled, extra genes ignored).

        Parameters
        ----------
        adata
            Cells to embed; ``None`` for the data the model was set up with.
        indices
            Subset of cells (positions or a boolean mask); ``None`` for all.
        batch_size
            Cells per minibatch (default 1024).
        min_overlap
            Smallest share of the model's genes that must be found in ``adata``.

        """
        self._check_if_trained(warn=True)
        adata, indices = self._cells(adata, indices, min_overlap)
        return self._map_minibatches(
            adata, indices, self._embedder(adata), self.module.n_latent, batch_size
        )
