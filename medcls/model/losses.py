"""Losses and class weights for imbalanced binary classification."""

from typing import Literal

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from medcls.params import FocalLoss, Loss
from medcls.pipeline.errors import MissingClassError


def make_loss(spec: Loss) -> keras.losses.Loss:
    """The focal loss or binary cross-entropy that `spec` names.

    Focal loss (Lin et al. 2017): (1 - p_t)^gamma down-weights easy examples so training
    concentrates on hard, ambiguous images; alpha weights the positive class, 1 - alpha the
    negative one.
    """
    if isinstance(spec, FocalLoss):
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=spec.alpha, gamma=spec.gamma
        )
    return keras.losses.BinaryCrossentropy()


def class_weights(labels: np.ndarray, mode: Literal["balanced", "none"]) -> dict[int, float] | None:
    """Per-class weights for `fit`: "balanced" gives n / (2 n_c) (sklearn's "balanced"), so each
    class contributes equally to the loss; "none" gives None (unweighted)."""
    if mode == "none":
        return None
    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels, minlength=2)
    if len(counts) != 2 or not counts.all():
        raise MissingClassError(
            f"the training split holds images of one class only (counts {counts.tolist()}): the "
            "dataset needs usable images of both classes (see data/manifest/<name>_rejected.csv)"
        )
    classes = np.array([0, 1])
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return dict(zip(classes.tolist(), weights.tolist()))
