"""Backbones from keras.applications, from a saved `.keras` file and the small CNN (offline)."""

from typing import get_args

import keras
import numpy as np
import pytest

from medcls.model.backbones import APPLICATIONS, build_backbone
from medcls.params import (
    Application,
    ApplicationBackbone,
    SavedBackbone,
    SmallCnnBackbone,
)


@pytest.mark.parametrize(
    "name, channels, preprocessing",
    [("efficientnetb0", 1280, "none"), ("resnet50", 2048, "caffe"), ("vgg16", 512, "caffe")],
)
def test_applications_give_a_spatial_feature_map_and_their_preprocessing(
    name, channels, preprocessing
):
    model, mode = build_backbone(ApplicationBackbone(name=name, weights="none"), 64)
    assert model.name == "backbone"
    assert model.output_shape == (None, 2, 2, channels)
    assert mode == preprocessing


def test_application_weights_load_from_a_file(tmp_path):
    spec = ApplicationBackbone(name="vgg16", weights="none")
    keras.utils.set_random_seed(1)
    saved, _ = build_backbone(spec, 32)
    saved.save_weights(tmp_path / "vgg16.weights.h5")
    keras.utils.set_random_seed(2)
    loaded, _ = build_backbone(
        spec.model_copy(update={"weights": str(tmp_path / "vgg16.weights.h5")}), 32
    )
    np.testing.assert_array_equal(
        loaded.get_layer("block5_conv3").kernel, saved.get_layer("block5_conv3").kernel
    )


@pytest.mark.parametrize(
    "spec, param",
    [
        (ApplicationBackbone(name="vgg16", weights="missing.weights.h5"), "backbone.weights"),
        (SavedBackbone(path="missing.keras"), "backbone.path"),
    ],
)
def test_missing_files_name_their_param(spec, param):
    with pytest.raises(FileNotFoundError, match=param):
        build_backbone(spec, 32)


def test_every_application_the_params_allow_is_built():
    assert set(get_args(Application)) == set(APPLICATIONS)


def test_small_cnn_halves_the_size_per_filter_count():
    model, mode = build_backbone(SmallCnnBackbone(filters=[4, 8]), 32)
    assert (model.name, mode) == ("backbone", "unit")
    assert model.output_shape == (None, 8, 8, 8)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "MaxPooling2D"] * 2


def test_saved_backbone_is_rebuilt_at_another_image_size_with_its_weights(tmp_path):
    small_cnn, _ = build_backbone(SmallCnnBackbone(filters=[4]), 32)
    small_cnn.save(tmp_path / "cnn.keras")
    model, mode = build_backbone(
        SavedBackbone(path=str(tmp_path / "cnn.keras"), preprocessing="tf"), 48
    )
    assert (model.name, mode, model.output_shape) == ("backbone", "tf", (None, 24, 24, 4))
    images = np.random.default_rng(0).random((1, 48, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(model(images), small_cnn(images), atol=1e-6)
    assert build_backbone(SavedBackbone(path=str(tmp_path / "cnn.keras")), 48)[1] == "none"


def test_saved_backbone_with_a_fixed_size_explains_the_mismatch(tmp_path):
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(
        tmp_path / "fixed.keras"
    )
    with pytest.raises(
        ValueError, match=r"backbone.path: .* saved for inputs of shape \(32, 32, 3\)"
    ):
        build_backbone(SavedBackbone(path=str(tmp_path / "fixed.keras")), 48)
