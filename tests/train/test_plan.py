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


def test_reduce_lr_on_plateau_watches_the_validation_loss(synthetic_counts):
    scssl.model.SSLEncoder.setup_anndata(synthetic_counts)
    encoder = scssl.model.SSLEncoder(synthetic_counts, n_hidden=(32,), n_latent=4)
    # scvi-tools' plan watches elbo_validation, which scssl models do not log
    encoder.train(max_epochs=2, batch_size=64, plan_kwargs={"reduce_lr_on_plateau": True})
    assert len(encoder.history["validation_loss"]) == 2


def test_a_query_model_records_its_training(synthetic_counts):
    scvi.settings.seed = 0
    scssl.model.SSLEncoder.setup_anndata(synthetic_counts)
    reference = scssl.model.SSLEncoder(synthetic_counts, n_hidden=(32,), n_latent=4)
    reference.train(max_epochs=1, batch_size=64)
    query = scssl.model.SSLEncoder.load_query_data(synthetic_counts.copy(), reference)
    assert query.history is None and query.is_trained_  # the reference's weights, no history
    query.train(max_epochs=2, batch_size=64, check_val_every_n_epoch=1)
    assert len(query.history["train_loss"]) == 2 and query.is_trained_
    query.train(max_epochs=1, batch_size=64, check_val_every_n_epoch=1)
    assert len(query.history["train_loss"]) == 3
