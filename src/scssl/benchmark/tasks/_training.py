"""scssl and scVI as the benchmark tasks train them."""

from __future__ import annotations

import anndata as ad

from .._baselines import scvi_model


def train_scssl(
    adata: ad.AnnData,
    batch_key: str | None,
    epochs: int | None,
    seed: int,
    batch_centering: bool = True,
    **model_kwargs,
):
    """An :class:`~scssl.model.SSLEncoder` trained on the counts of ``adata.X``.

    Returns ``(model, the AnnData it was set up with)``.
    """
    import scvi

    from scssl.model import SSLEncoder

    scvi.settings.seed = seed
    data = ad.AnnData(X=adata.X, obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    if batch_key is not None:
        data.obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
    SSLEncoder.setup_anndata(data, batch_key=batch_key)
    model = SSLEncoder(data, batch_centering=batch_centering, **model_kwargs)
    # Minibatches of 64 give small datasets enough optimisation steps (as `scssl demo`); larger
    # data get enough steps with the default 128, at half the time per epoch.
    batch_size = 64 if adata.n_obs < 5000 else 128
    model.train(
        max_epochs=epochs, batch_size=batch_size, early_stopping=True, enable_progress_bar=False
    )
    return model, data


def train_scvi(adata: ad.AnnData, batch_key: str | None, epochs: int | None, seed: int):
    """:func:`~scssl.benchmark.scvi_model`, with early stopping when no ``epochs`` are given."""
    return scvi_model(
        adata,
        batch_key=batch_key,
        max_epochs=epochs,
        seed=seed,
        early_stopping=epochs is None,
        enable_progress_bar=False,
    )
