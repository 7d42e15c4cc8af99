"""Frozen-phase feature caching: the head trains on features computed once, inside the classifier."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from medcls.model.classifier import backbone_of, build_classifier, split_at_backbone
from medcls.model.losses import make_loss
from medcls.params import BceLoss, HeadParams, SmallCnnBackbone, TrainParams
from medcls.training.fit import Batches, FitSettings, Phase, cached_features, planned_phases, train
from tests.support.training import HEAD, batches

SMALL_CNN = SmallCnnBackbone(filters=[4, 8])
PDF_SE_HEAD = HeadParams.model_validate(
    {
        **HEAD.model_dump(),
        "blocks": [
            {"pdf": {"filters": 4, "kernel_sizes": [1, 3], "dilation_rates": [1, 2]}},
            {"se": {"ratio": 2}},
        ],
    }
)


def unreadable() -> tf.data.Dataset:
    """Batches that fail when read: proof that a training path never touched them."""

    def fail():
        raise AssertionError("this dataset must not be read")
        yield

    spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    return tf.data.Dataset.from_generator(fail, output_signature=spec)


def classifier() -> keras.Model:
    return build_classifier(SMALL_CNN, PDF_SE_HEAD, 16, seed=0)


def fit_frozen(model: keras.Model, *, cache: bool, train_ds, plain_train_ds) -> dict:
    return train(
        model,
        [Phase("frozen", epochs=2, learning_rate=1e-2, patience=2, cache_features=cache)],
        Batches(train_ds, batches(1), plain_train=plain_train_ds),
        FitSettings(loss=make_loss(BceLoss()), class_weight=None, jit_compile=False),
    )


def test_extractor_and_head_share_the_classifiers_layers():
    model = classifier()
    extractor, head = split_at_backbone(model)
    images = next(iter(batches(2)))[0]
    np.testing.assert_allclose(head(extractor(images)), model(images), atol=1e-6)
    head_weights = {id(weight) for weight in head.weights}
    backbone_weights = {id(weight) for weight in backbone_of(model).weights}
    assert head_weights == {id(weight) for weight in model.weights} - backbone_weights


def test_head_trained_on_cached_features_is_the_classifiers_head():
    model = classifier()
    backbone_before = [weight.numpy() for weight in backbone_of(model).weights]
    images = np.concatenate([images for images, _ in batches(2)])
    before = model.predict(images, verbose=0)
    summary = fit_frozen(model, cache=True, train_ds=unreadable(), plain_train_ds=batches(0))
    assert summary["frozen"]["cached_features"] is True
    extractor, head = split_at_backbone(model)
    features = cached_features(extractor, batches(2), shuffle=False)
    after = model.predict(images, verbose=0)
    np.testing.assert_allclose(head.predict(features, verbose=0), after, atol=1e-6)
    assert not np.allclose(before, after)  # the head learned, and the classifier with it
    for saved, weight in zip(backbone_before, backbone_of(model).weights, strict=True):
        np.testing.assert_array_equal(saved, weight.numpy())


def test_unreadable_batches_fail_when_read():
    with pytest.raises(tf.errors.OpError, match="must not be read"):
        next(iter(unreadable()))


def test_augmented_phase_never_reads_the_plain_batches():
    summary = fit_frozen(classifier(), cache=False, train_ds=batches(0), plain_train_ds=unreadable())
    assert summary["frozen"]["cached_features"] is False


def test_caching_needs_the_plain_batches():
    with pytest.raises(ValueError, match="batches without augmentation: plain_train"):
        fit_frozen(classifier(), cache=True, train_ds=batches(0), plain_train_ds=None)


def test_a_phase_that_unfreezes_cannot_cache():
    with pytest.raises(ValueError, match="frozen backbone"):
        Phase("fine_tune", 1, 1e-5, 1, unfreeze_layers=1, cache_features=True)


@pytest.mark.parametrize(
    "param, cached",
    [({}, False), ({"cache_features": False}, False), ({"cache_features": True}, True)],
)
def test_only_the_frozen_phase_follows_the_cache_features_param(param, cached):
    schedule = TrainParams.model_validate(
        {
            "batch_size": 4,
            "epochs": 3,
            "patience": 1,
            "fine_tune": {"epochs": 1, "patience": 1, "unfreeze_layers": 1},
            "mixed_precision": "float32",
            "jit_compile": False,
            **param,
        }
    )
    frozen, fine_tune = planned_phases(schedule, lr=1e-3, fine_tune_lr=1e-5)
    assert (frozen.cache_features, fine_tune.cache_features) == (cached, False)
    assert (frozen.learning_rate, fine_tune.learning_rate) == (1e-3, 1e-5)
    assert (fine_tune.unfreeze_layers, fine_tune.unfreeze_fraction) == (1, None)
