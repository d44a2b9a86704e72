"""Baselines for RNA -> protein prediction: ridge regression and totalVI."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._baselines import log_normalize


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def ridge_protein_prediction(
    rna_train: ad.AnnData,
    protein_train: ad.AnnData,
    rna_test: ad.AnnData,
    alphas=(1.0, 10.0, 100.0, 1000.0, 10000.0),
    n_top_genes: int | None = None,
) -> pd.DataFrame:
    """Ridge regression from log-normalised RNA to ``log1p`` protein counts.

    The penalty is chosen among ``alphas`` by efficient leave-one-out cross-validation on the
    training cells (scikit-learn's ``RidgeCV``). With ``n_top_genes``, only the training cells'
    most variable genes are used.

    Returns
    -------
    Predicted ``log1p`` protein counts of the test cells, cells x proteins.

    """
    from sklearn.linear_model import RidgeCV

    from ._baselines import highly_variable_genes

    train = log_normalize(rna_train)
    test = log_normalize(rna_test)
    if n_top_genes is not None:
        keep = highly_variable_genes(train, n_top_genes)
        train, test = train[:, keep], test[:, keep]
    y = np.log1p(_dense(protein_train.X).astype(np.float64))
    model = RidgeCV(alphas=np.asarray(alphas, dtype=float)).fit(_dense(train.X), y)
    values = model.predict(_dense(test.X))
    return pd.DataFrame(values, index=rna_test.obs_names, columns=protein_train.var_names)


def totalvi_protein_prediction(
    rna: ad.AnnData,
    protein: ad.AnnData,
    test_mask: np.ndarray,
    max_epochs: int | None = None,
    seed: int = 0,
    include_protein_background: bool = False,
    n_samples: int = 1,
    **train_kwargs,
) -> tuple[pd.DataFrame, object]:
    """Proteins of RNA-only cells imputed by totalVI, as in its imputation recipe.

    All cells are trained on together; the proteins of the test cells are set to zero and the
    cells put in their own batch, which totalVI treats as "proteins not measured" (its batch
    mask), so they are imputed from RNA. Predictions are ``log1p`` of
    ``get_normalized_expression(transform_batch="reference")`` protein values.

    Returns
    -------
    ``(predicted log1p proteins of the test cells, the trained TOTALVI model)``.

    """
    import mudata as md
    import scvi

    scvi.settings.seed = seed
    test_mask = np.asarray(test_mask, dtype=bool)
    proteins = _dense(protein.X).astype(np.float32).copy()
    proteins[test_mask] = 0.0
    batch = np.where(test_mask, "query", "reference")
    rna_data = ad.AnnData(X=rna.X.copy(), obs=pd.DataFrame(index=rna.obs_names), var=rna.var[[]])
    rna_data.var_names_make_unique()
    rna_data.obs["split"] = pd.Categorical(batch)
    protein_data = ad.AnnData(
        X=proteins, obs=pd.DataFrame(index=protein.obs_names), var=protein.var[[]].copy()
    )
    protein_data.var_names = [f"prot_{name}" for name in protein.var_names]
    mdata = md.MuData({"rna": rna_data, "protein": protein_data})
    scvi.model.TOTALVI.setup_mudata(
        mdata,
        batch_key="split",
        modalities={"rna_layer": "rna", "protein_layer": "protein", "batch_key": "rna"},
    )
    model = scvi.model.TOTALVI(mdata)
    model.train(max_epochs=max_epochs, **train_kwargs)
    _, protein_values = model.get_normalized_expression(
        indices=np.flatnonzero(test_mask),
        transform_batch="reference",
        include_protein_background=include_protein_background,
        n_samples=n_samples,
        return_mean=True,
    )
    values = np.log1p(np.asarray(protein_values, dtype=np.float64))
    frame = pd.DataFrame(values, index=rna.obs_names[test_mask], columns=protein.var_names)
    return frame, model
