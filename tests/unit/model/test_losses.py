"""Focal loss against the formula, loss selection, loading models saved with the former custom loss,
and balanced class weights."""

import keras
import numpy as np
import pytest

from medcls.model.classifier import load_classifier
from medcls.model.losses import class_weights, make_loss
from medcls.params import BceLoss, FocalLoss

Y_TRUE = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float32)
Y_PRED = np.array([[0.9], [0.3], [0.2], [0.6]], dtype=np.float32)


def focal_formula(y_true: np.ndarray, y_pred: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """-alpha_t (1 - p_t)^gamma ln(p_t) per example, p clipped to [1e-7, 1 - 1e-7] in float32: what
    the project's former hand-written `BinaryFocalLoss` computed."""
    epsilon = np.float32(1e-7)
    probability = np.clip(y_pred, epsilon, 1 - epsilon)
    p_true = np.where(y_true == 1, probability, 1 - probability)
    alpha_true = np.where(y_true == 1, alpha, 1 - alpha)
    return np.mean(-alpha_true * (1 - p_true) ** gamma * np.log(p_true), axis=-1)


def test_focal_loss_matches_a_hand_computation():
    # -alpha_t * (1 - p_t)^gamma * ln(p_t), alpha 0.25 (positives) / 0.75 (negatives), gamma 2
    expected = [
        0.0002634013,  # positive, p 0.9: 0.25 * 0.1^2 * -ln(0.9)
        0.1474866685,  # positive, p 0.3: 0.25 * 0.7^2 * -ln(0.3)
        0.0066943065,  # negative, p 0.2: 0.75 * 0.2^2 * -ln(0.8)
        0.2473984976,  # negative, p 0.6: 0.75 * 0.6^2 * -ln(0.4)
    ]
    loss = make_loss(FocalLoss(alpha=0.25, gamma=2.0))
    np.testing.assert_allclose(loss.call(Y_TRUE, Y_PRED), expected, rtol=1e-5)
    np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), 0.1004607185, rtol=1e-5)


@pytest.mark.parametrize(
    "alpha, gamma", [(0.25, 2.0), (0.55, 2.0), (0.55, 1.5), (0.5, 0.0), (1.0, 2.0), (0.0, 3.0)]
)
def test_focal_loss_matches_the_formula_on_random_inputs(alpha, gamma):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, (256, 1)).astype(np.float32)
    y_pred = rng.uniform(0, 1, (256, 1)).astype(np.float32)
    y_pred[:4] = [[0.0], [1.0], [1e-9], [1 - 1e-9]]  # saturated outputs, clipped by both
    weights = rng.uniform(0.5, 2.0, 256).astype(np.float32)  # as `fit` applies class weights
    loss = make_loss(FocalLoss(alpha=alpha, gamma=gamma))
    expected = focal_formula(y_true, y_pred, alpha, gamma)
    np.testing.assert_allclose(loss.call(y_true, y_pred), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loss(y_true, y_pred, sample_weight=weights), np.mean(weights * expected), rtol=1e-5
    )


def test_make_loss_builds_the_named_loss():
    focal = make_loss(FocalLoss(alpha=0.55, gamma=2.0))
    assert isinstance(focal, keras.losses.BinaryFocalCrossentropy)
    config = focal.get_config()
    assert (config["alpha"], config["gamma"], config["apply_class_balancing"]) == (0.55, 2.0, True)
    assert isinstance(make_loss(BceLoss()), keras.losses.BinaryCrossentropy)


@keras.saving.register_keras_serializable(package="medcls")
class BinaryFocalLoss(keras.losses.Loss):
    """Stands in for the custom loss that models trained before keras' own focal loss were saved
    with; it is unregistered again before loading, as in code that no longer defines it."""

    def call(self, y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


def test_a_model_saved_with_the_former_custom_loss_still_loads(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss=BinaryFocalLoss())
    model.save(tmp_path / "model.keras")
    del keras.saving.get_custom_objects()["medcls>BinaryFocalLoss"]
    with pytest.raises(TypeError, match="BinaryFocalLoss"):
        keras.models.load_model(tmp_path / "model.keras")
    features = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(load_classifier(tmp_path / "model.keras")(features), model(features))


def test_balanced_class_weights_equalise_the_classes():
    assert class_weights(np.array([0, 0, 0, 1]), "balanced") == pytest.approx({0: 2 / 3, 1: 2.0})
    assert class_weights(np.array([1, 0, 1, 1, 1, 0]), "balanced") == pytest.approx(
        {0: 6 / 4, 1: 6 / 8}
    )
    assert class_weights(np.array([0, 0, 0, 1]), "none") is None


def test_balanced_class_weights_need_both_labels():
    with pytest.raises(ValueError, match=r"counts \[2, 0\]"):
        class_weights(np.array([0, 0]), "balanced")
