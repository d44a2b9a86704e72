"""The methods users would pick instead of scssl, run the standard way (each exactly once here)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from scssl.data import expression_matrix
from scssl.data import highly_variable_genes as select_genes
from scssl.model._finetuning import fit_logistic_regression


def log_normalize(adata: ad.AnnData, layer: str | None = None) -> ad.AnnData:
    """A copy with ``normalize_total(1e4)`` + ``log1p`` in ``.X`` (counts kept in ``layers``)."""
    out = ad.AnnData(
        X=expression_matrix(adata, layer).copy(), obs=adata.obs.copy(), var=adata.var[[]].copy()
    )
    out.layers["counts"] = out.X.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def highly_variable_genes(
    adata: ad.AnnData, n_top_genes: int = 2000, batch_key: str | None = None
) -> np.ndarray:
    """Mask of the ``n_top_genes`` most variable genes of log-normalised data.

    The scanpy tutorial's ``seurat`` flavour; batch-aware with ``batch_key``.
    """
    return select_genes(adata, n_top_genes, batch_key=batch_key, flavor="seurat")


def pca_embedding(
    adata: ad.AnnData, n_comps: int = 50, n_top_genes: int = 2000, seed: int = 0
) -> np.ndarray:
    """PCA on scaled log-normalised highly variable genes, the scanpy tutorial pipeline."""
    lognorm = log_normalize(adata)
    lognorm = lognorm[:, highly_variable_genes(lognorm, n_top_genes)].copy()
    sc.pp.scale(lognorm, max_value=10)
    sc.pp.pca(lognorm, n_comps=n_comps, random_state=seed)
    return lognorm.obsm["X_pca"]


def scvi_model(
    adata: ad.AnnData,
    batch_key: str | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
    **train_kwargs,
):
    """A trained scVI model with its default architecture, on the counts of ``adata.X``.

    ``train_kwargs`` go to ``SCVI.train`` (e.g. ``early_stopping``, ``enable_progress_bar``).
    """
    import scvi

    scvi.settings.seed = seed
    data = ad.AnnData(X=adata.X.copy(), obs=adata.obs.copy(), var=adata.var[[]].copy())
    scvi.model.SCVI.setup_anndata(data, batch_key=batch_key)
    model = scvi.model.SCVI(data)
    model.train(max_epochs=max_epochs, **train_kwargs)
    return model


def scvi_embedding(
    adata: ad.AnnData, max_epochs: int | None = None, batch_key: str | None = None, seed: int = 0
):
    """ScVI's latent space with its default settings; returns ``(embedding, model)``."""
    model = scvi_model(adata, batch_key=batch_key, max_epochs=max_epochs, seed=seed)
    return model.get_latent_representation(), model


def scanvi_model(
    scvi_trained,
    labels,
    max_epochs: int | None = None,
    seed: int | None = 0,
    unlabeled_category: str = "Unknown",
    adata: ad.AnnData | None = None,
    **train_kwargs,
):
    """ScANVI from a trained scVI model (``scvi.model.SCANVI.from_scvi_model``).

    Parameters
    ----------
    scvi_trained
        A trained ``scvi.model.SCVI``; the labels are added to the ``obs`` of its AnnData.
    labels
        A label per cell of the scVI model, ``unlabeled_category`` for unlabelled cells.
    max_epochs
        Training epochs (``None``: scvi-tools' heuristic).
    seed
        Seed set before training; ``None`` keeps the current random state.
    unlabeled_category
        The label of unlabelled cells.
    adata
        The AnnData of the scVI model's cells to set up; it is validated against the scVI model
        first (``from_scvi_model(adata=...)``). ``None``: the scVI model's AnnData, unvalidated.
        Both give the same model for one scANVI, but not the same random stream for the next
        one trained from the same scVI model.
    **train_kwargs
        Further options of ``SCANVI.train``; 100 samples per label, as scvi-tools' tutorials.

    """
    import scvi

    if seed is not None:
        scvi.settings.seed = seed
    cells = scvi_trained.adata if adata is None else adata
    cells.obs["_scssl_labels"] = np.asarray(labels).astype(str)
    model = scvi.model.SCANVI.from_scvi_model(
        scvi_trained,
        unlabeled_category=unlabeled_category,
        labels_key="_scssl_labels",
        adata=adata,
    )
    model.train(max_epochs=max_epochs, n_samples_per_label=100, **train_kwargs)
    return model


def epochs_trained(model) -> int:
    """Epochs a scvi-tools model trained for (fewer than asked when it stopped early)."""
    return len(model.history["train_loss"])


def logistic_regression_transfer(
    reference: ad.AnnData,
    labels,
    query: ad.AnnData,
    n_top_genes: int = 2000,
    seed: int = 0,
    soft: bool = False,
) -> np.ndarray | pd.DataFrame:
    """Logistic regression on log-normalised reference HVGs (CellTypist-like), applied to query.

    The regularisation C is chosen by macro F1 on a stratified 20% of the reference (from
    0.003 to 10), then the model is refit on the whole reference. Returns the predicted label of
    each query cell, or with ``soft=True`` the probabilities of every label (query cells x
    labels), as scvi-tools' ``predict(soft=True)``.
    """
    ref = log_normalize(reference)
    genes = ref.var_names[highly_variable_genes(ref, n_top_genes)]
    qry = log_normalize(query)
    features = ref[:, genes].X
    classifier = fit_logistic_regression(features, np.asarray(labels).astype(str), seed=seed)
    if soft:
        return pd.DataFrame(
            classifier.predict_proba(qry[:, genes].X),
            index=query.obs_names,
            columns=classifier.classes_,
        )
    return classifier.predict(qry[:, genes].X)
