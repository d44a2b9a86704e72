"""``scssl.tl.embed``: write a model's embedding into an AnnData, the scanpy way."""

from __future__ import annotations

import logging

from anndata import AnnData

from scssl.data import DEFAULT_MIN_OVERLAP

from ._uns import alignment_info, tool_params, uns_key

logger = logging.getLogger(__name__)


def embed(
    adata: AnnData,
    model,
    *,
    key_added: str = "X_scssl",
    batch_size: int | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    copy: bool = False,
) -> AnnData | None:
    """Embed cells with a pretrained scssl model.

    The genes of ``adata`` are aligned to the model's gene vocabulary (by Ensembl ID or symbol;
    missing genes zero-filled, extra genes ignored). The expression matrix is not modified.

    Parameters
    ----------
    adata
        Cells x genes, with the counts where the model expects them (``.X`` or the layer the
        model was set up with).
    model
        A trained :class:`scssl.model.SSLEncoder`.
    key_added
        Key of the embedding in ``adata.obsm``; use it as ``sc.pp.neighbors(adata,
        use_rep=key_added)``.
    batch_size
        Cells per minibatch.
    min_overlap
        Smallest share of the model's genes that must be found in ``adata``.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``. Sets:

    ``adata.obsm[key_added]``
        The embedding, ``(n_cells, n_latent)``.
    ``adata.uns[key]``, ``key`` being ``key_added`` without its ``"X_"`` prefix (``"scssl"``)
        ``params`` of the call and the gene ``alignment`` report (matched genes and share).

    """
    adata = adata.copy() if copy else adata
    aligned, report = model.align(adata, min_overlap=min_overlap)
    adata.obsm[key_added] = model.get_latent_representation(aligned, batch_size=batch_size)
    adata.uns[uns_key(key_added)] = {
        "params": tool_params(
            model,
            key_added=key_added,
            pretext=model.module.pretext,
            n_latent=int(model.module.n_latent),
            min_overlap=min_overlap,
        ),
        "alignment": alignment_info(model, report),
    }
    logger.info("Embedding of %d cells written to adata.obsm[%r].", adata.n_obs, key_added)
    return adata if copy else None
