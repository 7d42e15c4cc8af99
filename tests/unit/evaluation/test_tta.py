"""Test-time augmentation (`evaluate.tta`): the views, the mean over them, and the params."""

import keras
import numpy as np
import pytest

from medcls.evaluation import tta
from medcls.params import EvaluateParams

SIZE = 32


@pytest.fixture(scope="module")
def model() -> keras.Model:
    """A fake classifier whose output depends on where each pixel is (so a mirror changes it)."""
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                1, "sigmoid", kernel_initializer=keras.initializers.RandomNormal(0, 1e-3, seed=0)
            ),
        ]
    )


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3)).astype("float32")


def plain(model, images) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


def test_without_views_the_output_is_the_models(model, images):
    np.testing.assert_array_equal(tta.mean_output(model, images), plain(model, images))


def test_with_a_flip_the_output_is_the_mean_of_both_views(model, images):
    mirrored = images[:, :, ::-1, :]
    expected = (plain(model, images) + plain(model, mirrored)) / 2
    assert not np.allclose(plain(model, images), plain(model, mirrored))  # the views differ
    np.testing.assert_allclose(tta.mean_output(model, images, ["flip_horizontal"]), expected, rtol=1e-6)


def test_zoom_in_keeps_the_size_and_enlarges_the_centre():
    image = np.zeros((1, 20, 20, 3), "float32")
    image[:, 4:16, 4:16] = 255  # a centred square of 12 px
    zoomed = keras.ops.convert_to_numpy(tta.zoom_in(image))
    assert zoomed.shape == image.shape
    assert (zoomed > 127).sum() > (image > 127).sum()  # the square grew
    np.testing.assert_array_equal(zoomed[0, 10, 10], 255)


def test_tta_is_off_by_default_and_takes_known_views_once():
    evaluate = {"threshold": "youden", "bootstrap": 0, "baseline": False}
    assert EvaluateParams(**evaluate).tta == []
    assert EvaluateParams(**evaluate, tta=["flip_horizontal", "zoom_in"]).tta
    for views in (["rotate"], ["flip_horizontal", "flip_horizontal"]):
        with pytest.raises(ValueError):
            EvaluateParams(**evaluate, tta=views)
