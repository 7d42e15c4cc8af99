"""Losses and class weights for imbalanced binary classification."""

from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

EPSILON = 1e-7  # keeps log() finite for saturated probabilities


@keras.saving.register_keras_serializable(package="medcls")
class BinaryFocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017): down-weights easy examples by (1 - p_t)^gamma so training
    concentrates on hard, ambiguous images; `alpha` weights the positive class, 1 - alpha the
    negative one."""

    def __init__(
        self, alpha: float = 0.25, gamma: float = 2.0, name: str = "binary_focal_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.alpha = alpha
        self.gamma = gamma

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        probability = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        p_true = y_true * probability + (1.0 - y_true) * (1.0 - probability)
        alpha_true = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        loss = -alpha_true * ops.power(1.0 - p_true, self.gamma) * ops.log(p_true)
        return ops.mean(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


LOSSES = {
    "focal": lambda spec: BinaryFocalLoss(alpha=spec["alpha"], gamma=spec["gamma"]),
    "bce": lambda spec: keras.losses.BinaryCrossentropy(),
}


def make_loss(spec: Mapping) -> keras.losses.Loss:
    """The loss for {name: focal, alpha, gamma} or {name: bce}."""
    name = spec.get("name")
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r}; use one of {sorted(LOSSES)}")
    return LOSSES[name](spec)


def class_weights(labels: np.ndarray, mode: str) -> dict[int, float] | None:
    """Per-class weights for `fit`: "balanced" gives n / (2 n_c) (sklearn's "balanced"), so each
    class contributes equally to the loss; "none" gives None (unweighted)."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight: unknown mode {mode!r}; use 'balanced' or 'none'")
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=2)
    if len(counts) != 2 or not counts.all():
        raise ValueError(
            "class_weight: balanced weights need both labels 0 and 1 in the training split, got "
            f"counts {counts.tolist()}; check the split or use class_weight: none"
        )
    return {label: len(labels) / (2 * count) for label, count in enumerate(counts.tolist())}
