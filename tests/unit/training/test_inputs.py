"""Batches from example dicts and the seeded augmentations that keep pixels in 0..255."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from medcls.params import AugmentParams
from medcls.training.augment import (
    AUGMENTATION_KEYS,
    RandomAffine,
    RandomChannelShift,
    RandomSaturation,
    RandomScale,
    affine_transforms,
    build_augmenter,
)
from medcls.training.inputs import make_batches
from tests.support.builders import EVERY_AUGMENTATION


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


def test_no_augmenter_when_everything_is_off():
    assert build_augmenter(AugmentParams(), seed=0) is None
    off = AugmentParams(flip_horizontal=False, rotation=0, channel_shift=0)
    assert build_augmenter(off, seed=0) is None


def test_every_augmentation_param_has_a_layer():
    assert set(AugmentParams.model_fields) == set(AUGMENTATION_KEYS)


def test_full_augmenter_keeps_shape_dtype_and_pixel_range():
    augmenter = build_augmenter(EVERY_AUGMENTATION, seed=0)
    assert [type(layer).__name__ for layer in augmenter.layers] == [
        "RandomFlip",
        "RandomFlip",
        "RandomAffine",  # rotation, shift, shear and zoom in one resampling
        "RandomScale",
        "RandomContrast",
        "RandomSaturation",
        "RandomChannelShift",
    ]
    batch = images().astype(np.float32)
    augmented = np.asarray(augmenter(batch, training=True))
    assert augmented.shape == batch.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert not np.allclose(augmented, batch)


def test_each_augmentation_keeps_its_seed_whatever_else_is_on():
    def seeds(spec: AugmentParams) -> dict[str, int]:
        return {type(layer).__name__: layer.seed for layer in build_augmenter(spec, seed=10).layers}

    alone = seeds(AugmentParams(brightness=[0.9, 1.1]))
    assert seeds(EVERY_AUGMENTATION)["RandomScale"] == alone["RandomScale"]


def test_augmentation_is_reproducible_with_a_seed():
    batch = images().astype(np.float32)
    first, again, other = (build_augmenter(EVERY_AUGMENTATION, seed=seed)(batch) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_augmenter_runs_inside_tf_data_in_float32_under_mixed_precision(mixed_precision):
    augmenter = build_augmenter(EVERY_AUGMENTATION, seed=0)
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


def test_saturation_blends_with_grey_and_leaves_grey_images_alone():
    rgb = np.array([150.0, 100.0, 50.0], np.float32)  # stays inside 0..255 for factors 0.5..1.5
    grey = 0.299 * 150 + 0.587 * 100 + 0.114 * 50
    colour = np.broadcast_to(rgb, (64, 1, 1, 3))
    blended = np.asarray(RandomSaturation(0.5, seed=0)(colour))
    factors = (blended[..., :1] - grey) / (rgb[0] - grey)
    np.testing.assert_allclose(blended, grey + factors * (rgb - grey), rtol=1e-5)
    assert 0.5 <= factors.min() < 0.9 and 1.1 < factors.max() <= 1.5
    assert len(np.unique(factors)) == 64  # one factor per image
    ultrasound = np.broadcast_to(images(4)[..., :1], (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(RandomSaturation(0.5, seed=0)(ultrasound), ultrasound, rtol=1e-5)


NEUTRAL = {  # affine_transforms' parameters, in order, at values that change nothing
    "angle": 0.0,
    "shear_x": 0.0,
    "shear_y": 0.0,
    "zoom_x": 1.0,
    "zoom_y": 1.0,
    "shift_x": 0.0,
    "shift_y": 0.0,
}


def transformed(image: np.ndarray, **parameters) -> np.ndarray:
    """`image` [H, W] under the affine transform with the given parameters (others neutral)."""
    values = {**NEUTRAL, **parameters}
    transforms = affine_transforms(
        *(np.array([value], np.float32) for value in values.values()),
        height=image.shape[0],
        width=image.shape[1],
    )
    batch = image[None, :, :, None].astype(np.float32)
    return np.asarray(keras.ops.image.affine_transform(batch, transforms))[0, :, :, 0]


RAMP = np.arange(36, dtype=np.float32).reshape(6, 6)  # centre (2.5, 2.5)
ODD = np.arange(25, dtype=np.float32).reshape(5, 5)  # centre (2, 2): integer sample points


def test_affine_transforms_rotate_shift_shear_and_zoom_about_the_centre():
    np.testing.assert_allclose(transformed(RAMP), RAMP)
    np.testing.assert_allclose(transformed(RAMP, angle=np.pi / 2), np.rot90(RAMP), atol=1e-3)
    np.testing.assert_allclose(transformed(RAMP, shift_x=2.0)[:, :4], RAMP[:, 2:])
    np.testing.assert_allclose(transformed(RAMP, shift_y=-1.0)[1:], RAMP[:-1])
    sheared = transformed(ODD, shear_x=1.0)  # row y samples x + (y - 2)
    np.testing.assert_allclose(sheared[0, 2:], ODD[0, :3])
    np.testing.assert_allclose(sheared[4, :3], ODD[4, 2:])
    zoomed_out = transformed(ODD, zoom_x=2.0, zoom_y=2.0)  # pixel p samples 2p - 2
    np.testing.assert_allclose(zoomed_out[1:4, 1:4], ODD[::2, ::2])
    np.testing.assert_allclose(transformed(ODD, zoom_x=2.0)[:, 1:4], ODD[:, ::2])


def test_random_affine_draws_one_transform_per_image_within_its_ranges():
    image = np.zeros((1, 9, 9, 3), np.float32)
    image[0, 4, 4] = 255.0
    batch = np.repeat(image, 32, axis=0)
    moved = np.asarray(RandomAffine(shift=2 / 9, seed=0)(batch))
    brightest = [np.unravel_index(np.argmax(one[..., 0]), (9, 9)) for one in moved]
    assert all(2 <= row <= 6 and 2 <= column <= 6 for row, column in brightest)
    assert len(set(brightest)) > 5
    np.testing.assert_array_equal(RandomAffine(rotation=20, seed=0)(batch, training=False), batch)


@pytest.mark.parametrize(
    "layer",
    [
        RandomScale((0.9, 1.1), seed=3),
        RandomChannelShift(10.0, seed=4),
        RandomSaturation(0.2, seed=5),
    ],
)
def test_augmentation_layer_config_round_trips(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
