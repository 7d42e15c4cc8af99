"""The ultrasound augmentations (speckle, gamma, blur, downscale) and the ROI margin crop: seeded,
in 0..255, off unless asked for, inactive outside training, saved with a model; the seeds of the
older augmentations do not move."""

import keras
import numpy as np
import pytest

from medcls.params import AugmentParams, RoiParams
from medcls.training.augment import (
    RandomDownscale,
    RandomGamma,
    RandomGaussianBlur,
    RandomMarginCrop,
    RandomSpeckle,
    build_augmenter,
)
from tests.support.builders import EVERY_AUGMENTATION

ULTRASOUND_ON = {"speckle": 0.3, "gamma": [0.5, 2.0], "blur": 1.5, "downscale": 0.5}
ROI = {"use_mask": True, "margin": 0.1, "mask_background": False, "keep_aspect": True}
LAYERS = {
    "speckle": lambda seed: RandomSpeckle(0.3, seed=seed),
    "gamma": lambda seed: RandomGamma((0.5, 2.0), seed=seed),
    "blur": lambda seed: RandomGaussianBlur(1.5, seed=seed),
    "downscale": lambda seed: RandomDownscale(0.5, seed=seed),
    "margin_crop": lambda seed: RandomMarginCrop(0.1, 0.1, seed=seed),
}


def grey_batch(count: int = 6, size: int = 24) -> np.ndarray:
    """Random grey scans replicated to RGB, as decoded scans reach the model, with 0 and 255."""
    grey = np.random.default_rng(0).integers(0, 256, (count, size, size, 1)).astype(np.float32)
    grey[:, 0, 0], grey[:, -1, -1] = 0, 255
    return np.repeat(grey, 3, axis=-1)


def layer_seeds(augmenter: keras.Sequential) -> list[tuple[str, int]]:
    return [(type(layer).__name__, layer.seed) for layer in augmenter.layers]


@pytest.mark.parametrize("name", LAYERS)
def test_same_seed_same_output_other_seed_other_output(name):
    batch = grey_batch()
    first, again, other = (np.asarray(LAYERS[name](seed)(batch)) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("name", LAYERS)
def test_output_stays_float_pixels_in_0_to_255(name):
    batch = grey_batch()
    augmented = np.asarray(LAYERS[name](0)(batch))
    assert augmented.shape == batch.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert not np.allclose(augmented, batch)


@pytest.mark.parametrize("name", LAYERS)
def test_inactive_outside_training(name):
    batch = grey_batch()
    np.testing.assert_array_equal(LAYERS[name](0)(batch, training=False), batch)


@pytest.mark.parametrize("name", LAYERS)
def test_saved_and_loaded_with_a_keras_model(name, tmp_path):
    layer = LAYERS[name](3)
    model = keras.Sequential([keras.Input((24, 24, 3)), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras").layers[0]
    assert type(loaded) is type(layer) and loaded.get_config() == layer.get_config()


def test_without_the_new_keys_the_augmenter_and_its_seeds_are_unchanged():
    """The seeds the augmenter had before the ultrasound keys: real-data runs with unchanged params
    must draw the same augmentations."""
    assert layer_seeds(build_augmenter(EVERY_AUGMENTATION, seed=10)) == [
        ("RandomFlip", 10),
        ("RandomFlip", 11),
        ("RandomAffine", 12),
        ("RandomScale", 16),
        ("RandomContrast", 17),
        ("RandomSaturation", 18),
        ("RandomChannelShift", 19),
    ]
    everything = EVERY_AUGMENTATION.model_copy(update=ULTRASOUND_ON)
    assert layer_seeds(build_augmenter(everything, seed=10)) == [
        *layer_seeds(build_augmenter(EVERY_AUGMENTATION, seed=10)),
        ("RandomSpeckle", 20),
        ("RandomGaussianBlur", 21),
        ("RandomDownscale", 22),
        ("RandomGamma", 23),
    ]


@pytest.mark.parametrize(
    ("key", "layer"),
    [
        ("speckle", "RandomSpeckle"),
        ("gamma", "RandomGamma"),
        ("blur", "RandomGaussianBlur"),
        ("downscale", "RandomDownscale"),
    ],
)
def test_each_key_builds_its_layer_only_when_on(key, layer):
    assert [
        type(one).__name__
        for one in build_augmenter(AugmentParams(**{key: ULTRASOUND_ON[key]}), 0).layers
    ] == [layer]
    off = {"gamma": None}.get(key, 0.0)
    assert build_augmenter(AugmentParams(**{key: off}), seed=0) is None


def test_margin_crop_comes_first_only_with_margin_jitter():
    assert build_augmenter(AugmentParams(), 0, roi=RoiParams(**ROI)) is None
    jittered = RoiParams(**ROI, margin_jitter=0.05)
    augmenter = build_augmenter(AugmentParams(flip_horizontal=True), 10, roi=jittered)
    assert layer_seeds(augmenter) == [("RandomMarginCrop", 110), ("RandomFlip", 10)]
    crop = augmenter.layers[0]
    assert (crop.margin, crop.jitter) == (0.1, 0.05)


def test_speckle_multiplies_each_pixel_by_one_factor_for_all_channels():
    flat = np.full((4, 32, 32, 3), 100.0, np.float32)
    speckled = np.asarray(RandomSpeckle(0.2, seed=0)(flat))
    np.testing.assert_array_equal(speckled[..., 0], speckled[..., 2])  # grey stays grey
    factors = speckled[..., 0] / 100
    assert abs(factors.mean() - 1) < 0.02 and abs(factors.std() - 0.2) < 0.02


def test_gamma_is_one_power_per_image_within_the_range_keeping_black_and_white():
    levels = np.array([0.0, 64.0, 255.0], np.float32)
    batch = np.broadcast_to(levels[None, :, None, None], (64, 3, 1, 3))
    corrected = np.asarray(RandomGamma((0.5, 2.0), seed=0)(batch))
    np.testing.assert_allclose(corrected[:, 0], 0, atol=1e-3)
    np.testing.assert_allclose(corrected[:, 2], 255, rtol=1e-5)
    gammas = np.log(corrected[:, 1, 0, 0] / 255) / np.log(64 / 255)
    assert 0.5 <= gammas.min() < 0.7 and 1.4 < gammas.max() <= 2.0
    assert len(np.unique(corrected[:, 1, 0, 0])) == 64
    assert 0.3 < np.mean(gammas < 1) < 0.7  # log-uniform: as many below 1 as above


def test_blur_smooths_noise_and_keeps_flat_images():
    flat = np.full((2, 16, 16, 3), 80.0, np.float32)
    np.testing.assert_allclose(RandomGaussianBlur(2.0, seed=0)(flat), flat, rtol=1e-5)
    noisy = grey_batch(32, 32)
    blurred = np.asarray(RandomGaussianBlur(2.0, seed=0)(noisy))
    spread = blurred.std(axis=(1, 2, 3))
    assert (spread <= noisy.std(axis=(1, 2, 3)) + 1e-3).all()
    assert spread.max() / spread.min() > 1.5  # one sigma per image
    np.testing.assert_allclose(blurred.mean(), noisy.mean(), rtol=0.02)


def test_downscale_loses_detail_and_keeps_flat_images():
    flat = np.full((2, 16, 16, 3), 80.0, np.float32)
    np.testing.assert_allclose(RandomDownscale(0.5, seed=0)(flat), flat, rtol=1e-5)
    noisy = grey_batch(16, 32)
    np.testing.assert_allclose(RandomDownscale(1.0, seed=0)(noisy), noisy, atol=1e-3)
    degraded = np.asarray(RandomDownscale(0.5, seed=0)(noisy))
    assert degraded.std() < noisy.std()
    detail = np.abs(np.diff(degraded, axis=2)).mean(axis=(1, 2, 3))
    assert detail.max() / detail.min() > 1.2  # one factor per image


def square_side(images: np.ndarray) -> np.ndarray:
    """The side, in pixels, of the bright square in the middle of each image."""
    return (images[:, images.shape[1] // 2, :, 0] > 127.5).sum(axis=1)


def test_margin_crop_shows_the_box_at_margins_within_the_range():
    """Wide crops of a box at margin 0.3 (side 40 px of 64): a margin of m in [0.1, 0.3] shows it
    at 64 / (1 + 2m) px, between 40 and 53."""
    wide = np.zeros((256, 64, 64, 3), np.float32)
    wide[:, 12:52, 12:52] = 255
    sides = square_side(np.asarray(RandomMarginCrop(0.2, 0.1, seed=0)(wide)))
    assert sides.min() >= 40 - 1 and sides.max() <= 53 + 1
    assert sides.min() <= 42 and sides.max() >= 51 and len(np.unique(sides)) > 5


def test_jitter_beyond_the_margin_starts_at_no_margin():
    wide = np.zeros((256, 64, 64, 3), np.float32)
    wide[:, 12:52, 12:52] = 255  # margin 0.3 around the square
    sides = square_side(np.asarray(RandomMarginCrop(0.1, 0.2, seed=0)(wide)))
    assert sides.max() <= 64 and sides.max() >= 62
