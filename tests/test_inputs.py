"""Batches from example dicts and the seeded augmentations that keep pixels in 0..255."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from medcls.inputs import (
    RandomChannelShift,
    RandomScale,
    _saturation_factor,
    build_augmenter,
    labels_of,
    make_batches,
)

EVERYTHING_ON = {
    "flip_horizontal": True,
    "flip_vertical": True,
    "rotation": 20,
    "shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "brightness": [0.7, 1.3],
    "contrast": 0.2,
    "saturation": 0.2,
    "channel_shift": 20,
}


def images(count: int = 10, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def examples(count: int = 10) -> tf.data.Dataset:
    """The data library's element layout; labels are 0..count-1 so the order is visible."""
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images(count),
            "label": np.arange(count, dtype=np.int64),
            "id": [f"img{index}.png" for index in range(count)],
            "group": [f"patient{index // 2}" for index in range(count)],
        }
    )


def label_order(batches: tf.data.Dataset) -> list[int]:
    return [int(label) for _, labels in batches for label in labels.numpy().ravel()]


def test_batches_hold_float_pixels_and_float_labels_in_order():
    batches = list(make_batches(examples(), batch_size=4))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    first_images, first_labels = batches[0]
    assert first_images.dtype == tf.float32 and first_labels.dtype == tf.float32
    assert first_images.shape == (4, 16, 16, 3) and first_labels.shape == (4, 1)
    np.testing.assert_array_equal(first_images, images()[:4].astype(np.float32))
    assert first_labels.numpy().ravel().tolist() == [0, 1, 2, 3]


def test_shuffling_is_seeded_and_differs_between_epochs():
    batches = make_batches(examples(), batch_size=4, shuffle=True, seed=7, cache=True)
    first_epoch, second_epoch = label_order(batches), label_order(batches)
    assert sorted(first_epoch) == list(range(10))
    assert first_epoch != second_epoch
    assert label_order(make_batches(examples(), batch_size=4, shuffle=True, seed=7)) == first_epoch


def test_labels_of_reads_the_labels_in_order():
    labels = labels_of(examples(5))
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3, 4]


def test_no_augmenter_when_everything_is_off():
    assert build_augmenter({}, seed=0) is None
    assert (
        build_augmenter({"flip_horizontal": False, "rotation": 0, "channel_shift": 0}, seed=0)
        is None
    )


def test_unknown_augmentation_key_is_named():
    with pytest.raises(ValueError, match=r"unknown keys \['rotate'\]"):
        build_augmenter({"rotate": 10}, seed=0)


def test_full_augmenter_keeps_shape_dtype_and_pixel_range():
    augmenter = build_augmenter(EVERYTHING_ON, seed=0)
    assert len(augmenter.layers) == len(EVERYTHING_ON)
    batch = images().astype(np.float32)
    augmented = np.asarray(augmenter(batch, training=True))
    assert augmented.shape == batch.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert not np.allclose(augmented, batch)


def test_augmentation_is_reproducible_with_a_seed():
    batch = images().astype(np.float32)
    first, again, other = (build_augmenter(EVERYTHING_ON, seed=seed)(batch) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_augmenter_runs_inside_tf_data_in_float32_under_mixed_precision(mixed_precision):
    augmenter = build_augmenter(EVERYTHING_ON, seed=0)
    for batch, _ in make_batches(examples(), batch_size=4, augmenter=augmenter, shuffle=True):
        assert batch.dtype == tf.float32
        assert batch.numpy().min() >= 0 and batch.numpy().max() <= 255


def test_random_scale_multiplies_and_clips():
    batch = np.full((2, 4, 4, 3), 200.0, dtype=np.float32)
    np.testing.assert_allclose(RandomScale((0.5, 0.5), seed=0)(batch), 100.0)
    np.testing.assert_allclose(RandomScale((2.0, 2.0), seed=0)(batch), 255.0)
    scaled = np.asarray(RandomScale((0.7, 1.3), seed=0)(batch))
    assert (scaled.min(axis=(1, 2, 3)) == scaled.max(axis=(1, 2, 3))).all()  # one factor per image
    assert ((scaled >= 140) & (scaled <= 255)).all()


def test_channel_shift_adds_one_offset_per_image_and_channel():
    batch = np.full((2, 4, 4, 3), 100.0, dtype=np.float32)
    shifted = np.asarray(RandomChannelShift(20, seed=0)(batch))
    offsets = shifted[:, 0, 0, :] - 100
    np.testing.assert_allclose(
        shifted - 100, np.broadcast_to(offsets[:, None, None, :], shifted.shape)
    )
    assert (np.abs(offsets) <= 20).all() and len(np.unique(offsets)) == 6
    np.testing.assert_array_equal(RandomChannelShift(20, seed=0)(batch, training=False), batch)


def test_saturation_change_maps_to_keras_factor_range():
    low, high = _saturation_factor(0.2)
    assert low / (1 - low) == pytest.approx(0.8) and high / (1 - high) == pytest.approx(1.2)


@pytest.mark.parametrize(
    "layer", [RandomScale((0.9, 1.1), seed=3), RandomChannelShift(10.0, seed=4)]
)
def test_augmentation_layer_config_round_trips(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
