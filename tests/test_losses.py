"""Focal loss against a hand computation, loss selection and balanced class weights."""

import keras
import numpy as np
import pytest

from medcls.model.losses import BinaryFocalLoss, class_weights, make_loss

Y_TRUE = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float32)
Y_PRED = np.array([[0.9], [0.3], [0.2], [0.6]], dtype=np.float32)


def test_focal_loss_matches_a_hand_computation():
    # -alpha_t * (1 - p_t)^gamma * ln(p_t), alpha 0.25 (positives) / 0.75 (negatives), gamma 2
    expected = [
        0.0002634013,  # positive, p 0.9: 0.25 * 0.1^2 * -ln(0.9)
        0.1474866685,  # positive, p 0.3: 0.25 * 0.7^2 * -ln(0.3)
        0.0066943065,  # negative, p 0.2: 0.75 * 0.2^2 * -ln(0.8)
        0.2473984976,  # negative, p 0.6: 0.75 * 0.6^2 * -ln(0.4)
    ]
    loss = BinaryFocalLoss(alpha=0.25, gamma=2.0)
    np.testing.assert_allclose(loss.call(Y_TRUE, Y_PRED), expected, rtol=1e-5)
    np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), 0.1004607185, rtol=1e-5)


def test_focal_loss_without_focusing_is_alpha_weighted_cross_entropy():
    cross_entropy = keras.losses.BinaryCrossentropy(reduction=None)(Y_TRUE, Y_PRED)
    focal = BinaryFocalLoss(alpha=0.5, gamma=0.0).call(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(focal, 0.5 * np.asarray(cross_entropy), rtol=1e-5)


def test_alpha_shifts_weight_between_the_classes():
    only_positives = np.asarray(BinaryFocalLoss(alpha=1.0, gamma=2.0).call(Y_TRUE, Y_PRED))
    assert only_positives[2:].tolist() == [0.0, 0.0]
    assert (only_positives[:2] > 0).all()


def test_gamma_down_weights_easy_examples_more_than_hard_ones():
    plain = np.asarray(BinaryFocalLoss(alpha=0.5, gamma=0.0).call(Y_TRUE, Y_PRED))
    focused = np.asarray(BinaryFocalLoss(alpha=0.5, gamma=2.0).call(Y_TRUE, Y_PRED))
    kept = focused / plain
    assert kept[0] < kept[1] and kept[2] < kept[3]  # (1 - p_t)^2: 0.01 vs 0.49, 0.04 vs 0.36


def test_focal_loss_is_finite_for_saturated_predictions():
    loss = BinaryFocalLoss()(np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]], dtype=np.float32))
    assert np.isfinite(loss) and loss > 1.0


def test_focal_loss_config_round_trips():
    config = BinaryFocalLoss(alpha=0.55, gamma=1.5).get_config()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(BinaryFocalLoss(alpha=0.55, gamma=1.5))
    )
    assert (restored.alpha, restored.gamma) == (0.55, 1.5)
    assert restored.get_config() == config


def test_make_loss_builds_the_named_loss():
    focal = make_loss({"name": "focal", "alpha": 0.55, "gamma": 2.0})
    assert isinstance(focal, BinaryFocalLoss) and (focal.alpha, focal.gamma) == (0.55, 2.0)
    assert isinstance(make_loss({"name": "bce"}), keras.losses.BinaryCrossentropy)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        make_loss({"name": "hinge"})


def test_balanced_class_weights_equalise_the_classes():
    assert class_weights(np.array([0, 0, 0, 1]), "balanced") == pytest.approx({0: 2 / 3, 1: 2.0})
    assert class_weights(np.array([0, 0, 0, 1]), "none") is None


@pytest.mark.parametrize(
    "labels, mode, message",
    [
        (np.array([0, 0]), "balanced", r"counts \[2, 0\]"),
        (np.array([0, 1]), "inverse", "unknown mode"),
    ],
)
def test_class_weight_errors(labels, mode, message):
    with pytest.raises(ValueError, match=message):
        class_weights(labels, mode)
