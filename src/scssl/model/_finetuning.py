"""SSLClassifier's fine-tuning: splits, class weights, start, optimiser, weight interpolation.

The defaults were chosen on Kang (control -> stimulated) and pbmc_3tech (leave one chemistry
out); see the *Label transfer* docs page for what each choice gained.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from scssl.data._warnings import warn_user

ClassBalance = Literal["inverse", "sqrt", "none"]
#: Inverse regularisation strengths tried for the linear probe (and the baseline).
LOGISTIC_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def stratified_split(
    codes: np.ndarray,
    n_classes: int,
    validation_share: float,
    seed: int = 0,
    min_class_cells: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of training and validation cells; big enough classes keep cells in both.

    Labelled cells (``codes < n_classes``) are split class by class, a class of
    ``min_class_cells`` or more cells giving at least one to validation and keeping at least
    one for training, a smaller class giving none; unlabelled cells all train (their pretext
    loss is what they are there for). ``validation_share=0`` holds no cell out.
    """
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for code in np.unique(codes):
        cells = rng.permutation(np.flatnonzero(codes == code))
        n_val = round(len(cells) * validation_share)
        if code >= n_classes or validation_share <= 0 or len(cells) < max(min_class_cells, 2):
            n_val = 0
        else:
            n_val = min(max(1, n_val), len(cells) - 1)
        validation.append(cells[:n_val])
        train.append(cells[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


def split_labelled(
    codes: np.ndarray, n_classes: int, validation_size: float, min_cells: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation cells of a classifier from each cell's class code (-1: none).

    :func:`stratified_split` with the unlabelled cells training; errors name the fix.
    """
    if not 0.0 <= validation_size < 1.0:
        raise ValueError(f"validation_size={validation_size}; give a share in [0, 1).")
    if not (codes >= 0).any():
        raise ValueError(
            "No labelled cells: every cell has the unlabeled category; a classifier needs "
            "labels to train."
        )
    codes = np.where(codes >= 0, codes, n_classes)
    return stratified_split(codes, n_classes, validation_size, seed, min_class_cells=min_cells)


def class_weights(counts: np.ndarray, balance: ClassBalance) -> np.ndarray:
    """Cross-entropy weight of each class from its number of labelled cells.

    ``"inverse"``: rare classes count as much as common ones; ``"sqrt"``: halfway; ``"none"``.
    Classes without cells get weight 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if balance == "none":
        return (counts > 0).astype(np.float64)
    inverse = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    if balance == "inverse":
        return inverse
    if balance == "sqrt":
        return np.sqrt(inverse)
    raise ValueError(f"class_balance={balance!r}; choose 'inverse', 'sqrt' or 'none'.")


def fit_logistic_regression(
    features: np.ndarray, labels: np.ndarray, seed: int = 0, cs=LOGISTIC_CS
) -> LogisticRegression:
    """Logistic regression, C chosen by macro F1 on a stratified 20% split, refit on all cells."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    codes = np.searchsorted(classes, labels)
    train, validation = stratified_split(codes, len(classes), 0.2, seed)
    best_c, best_f1 = cs[0], -1.0
    if len(validation) and len(np.unique(codes[train])) == len(classes):
        for c in cs:
            model = LogisticRegression(C=c, max_iter=3000).fit(features[train], labels[train])
            f1 = f1_score(labels[validation], model.predict(features[validation]), average="macro")
            if f1 > best_f1:
                best_c, best_f1 = c, f1
    else:  # too few cells to choose: sklearn's default
        best_c = 1.0
    return LogisticRegression(C=best_c, max_iter=3000).fit(features, labels)


def discriminative_adamw(
    module: torch.nn.Module, lr: float, encoder_lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW with a lower learning rate for the pretrained encoder than for everything else."""
    encoder = [p for p in module.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in encoder_ids]
    groups = [{"params": rest, "lr": lr}]
    if encoder:
        groups.append({"params": encoder, "lr": encoder_lr})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)


def discriminative_plan(
    module, lr: float, encoder_lr: float, weight_decay: float, plan_kwargs: dict | None
) -> dict:
    """``plan_kwargs`` of the training plan using :func:`discriminative_adamw`."""

    def creator(_params):  # the plan passes all parameters; the groups come from the module
        return discriminative_adamw(module, lr, encoder_lr, weight_decay)

    return {"optimizer": "Custom", "optimizer_creator": creator, **(plan_kwargs or {})}


def linear_probe_head(
    features: np.ndarray, codes: np.ndarray, n_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of a linear head from a logistic regression on ``features``.

    Classes without cells get a bias of -10 (never predicted until fine-tuning moves them).
    """
    probe = fit_logistic_regression(features, codes, seed=seed)
    weight = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -10.0, dtype=np.float32)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # scikit-learn keeps one row for two classes
        coef, intercept = np.vstack([-coef, coef]), np.array([-intercept[0], intercept[0]])
    weight[probe.classes_] = coef
    bias[probe.classes_] = intercept
    return weight, bias


def start_head(module, z: np.ndarray, codes: np.ndarray, linear_probe: bool, seed: int) -> None:
    """Standardise the head's input over embeddings ``z``; with ``linear_probe`` fit its layer.

    The linear probe is a logistic regression on the frozen, standardised embedding.
    """
    mean, scale = z.mean(0), z.std(0) + 1e-6
    with torch.no_grad():
        module.embedding_mean.copy_(torch.as_tensor(mean))
        module.embedding_scale.copy_(torch.as_tensor(scale))
    if not linear_probe:
        return
    weight, bias = linear_probe_head((z - mean) / scale, codes, module.n_classes, seed)
    with torch.no_grad():
        module.head[-1].weight.copy_(torch.as_tensor(weight))
        module.head[-1].bias.copy_(torch.as_tensor(bias))


def interpolation_start(
    module: torch.nn.Module, finetuned_share: float
) -> dict[str, torch.Tensor] | None:
    """A copy of every parameter before fine-tuning, for :func:`interpolate_weights`.

    ``None`` when ``finetuned_share`` is 1 (nothing to interpolate); a share outside [0, 1]
    raises (before the network trains).
    """
    if not 0.0 <= finetuned_share <= 1.0:
        raise ValueError(f"finetuned_share={finetuned_share}; give a share in [0, 1].")
    if finetuned_share == 1.0:
        return None
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def interpolate_weights(
    module: torch.nn.Module, start: dict[str, torch.Tensor], finetuned_share: float
) -> None:
    """Move each parameter to ``start + finetuned_share * (fine-tuned - start)``, in place.

    Weight-space ensembling of the start (:func:`interpolation_start`) and the fine-tuned model
    (WiSE-FT, Wortsman et al., CVPR 2022): 1 keeps the fine-tuned weights, 0 the start.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(start[name].to(param.device, param.dtype).lerp(param, finetuned_share))


def labelled_class_counts(adata_manager, class_names) -> tuple[list[str], np.ndarray]:
    """Class names in output order (the registered labels when ``None``) and their cell counts.

    Warns about classes without labelled cells; raises with fewer than 2 classes.
    """
    state = adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
    mapping = [str(c) for c in state.categorical_mapping]
    unlabeled = str(state.unlabeled_category)
    if class_names is None:
        class_names = [c for c in mapping if c != unlabeled]
    class_names = [str(c) for c in class_names]
    if len(class_names) < 2:
        raise ValueError(
            f"adata.obs[{adata_manager.registry['setup_args']['labels_key']!r}] has "
            f"{len(class_names)} labelled classes {class_names} besides the unlabeled "
            f"category {unlabeled!r}; a classifier needs at least 2 classes."
        )
    codes = adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
    by_name = {name: int((codes == i).sum()) for i, name in enumerate(mapping)}
    counts = np.array([by_name.get(c, 0) for c in class_names], dtype=np.float64)
    empty = [c for c, n in zip(class_names, counts, strict=True) if n == 0]
    if empty and counts.sum() > 0:
        warn_user(
            f"Classes without any labelled cell get weight 0 and will rarely be predicted: "
            f"{empty}. Drop unused categories (obs[labels_key].cat.remove_unused_categories())"
            " to remove them.",
        )
    return class_names, counts
