import scvi

import scssl

VARIATIONAL = ("elbo_", "kl_local_", "kl_global_", "reconstruction_loss_")


def test_history_lists_the_models_own_losses_not_an_elbo(synthetic_counts):
    scvi.settings.seed = 0
    adata = synthetic_counts
    scssl.model.SSLEncoder.setup_anndata(adata, batch_key="batch")
    encoder = scssl.model.SSLEncoder(
        adata, n_hidden=(32,), n_latent=4, batch_centering=False, batch_adversary_weight=0.3
    )
    encoder.train(max_epochs=1, batch_size=64, check_val_every_n_epoch=1)
    assert set(encoder.history) == {
        f"{name}_{mode}"
        for name in ("pretext_loss", "batch_classifier_loss", "batch_confusion_loss")
        for mode in ("train", "validation")
    } | {"train_loss", "validation_loss"}

    classifier = scssl.model.SSLClassifier.from_encoder(encoder, adata, "cell_type")
    classifier.train(max_epochs=1, batch_size=64)
    assert {"train_loss", "classification_loss_train", "pretext_loss_train"} <= set(
        classifier.history
    )
    assert not [key for key in classifier.history if key.startswith(VARIATIONAL)]
