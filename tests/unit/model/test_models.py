"""Classifier assembly, `.keras` round trips and fine-tuning's unfreezing rules."""

from pathlib import Path
from typing import get_args

import keras
import numpy as np
import pytest

from medcls.model.blocks import PDFBlock
from medcls.model.classifier import POOLING, backbone_of, build_classifier, unfreeze_top
from medcls.params import ApplicationBackbone, HeadParams, SavedBackbone
from tests.support.models import PDF_SE_HEAD, PLAIN_HEAD, SMALL_CNN, raw_images

SHARED_WEIGHTS = Path(__file__).resolve().parents[4] / "shared" / "weights"

def assert_round_trip(model: keras.Model, path: Path, images: np.ndarray) -> keras.Model:
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    return loaded


@pytest.fixture(scope="module")
def classifier() -> keras.Model:
    return build_classifier(SMALL_CNN, PDF_SE_HEAD, 32, seed=0)


def test_classifier_maps_raw_pixels_to_one_probability(classifier):
    assert [layer.name for layer in classifier.layers][:3] == ["image", "preprocess", "backbone"]
    assert classifier.get_layer("preprocess").mode == "unit"
    assert [type(layer).__name__ for layer in classifier.layers[3:6]] == [
        "PDFBlock",
        "SEBlock",
        "GlobalAveragePooling2D",
    ]
    probabilities = classifier.predict(raw_images(32), verbose=0)
    assert probabilities.shape == (3, 1) and probabilities.dtype == np.float32
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_backbone_starts_frozen_and_the_head_trains(classifier):
    assert not backbone_of(classifier).trainable
    assert all(weight.path.split("/")[0] != "backbone" for weight in classifier.trainable_weights)
    assert (
        len(classifier.trainable_weights) == 2 + 2 * 3 + 2 * 2 + 2 * 2
    )  # reduce, 2 branches, project; SE; 2 dense


def test_same_seed_gives_the_same_initial_model():
    first, second = (build_classifier(SMALL_CNN, PLAIN_HEAD, 32, seed=3) for _ in range(2))
    np.testing.assert_array_equal(
        first.predict(raw_images(32), verbose=0), second.predict(raw_images(32), verbose=0)
    )


def test_pdf_se_classifier_round_trips_through_a_keras_file(classifier, tmp_path):
    loaded = assert_round_trip(classifier, tmp_path / "model.keras", raw_images(32))
    (pdf,) = [layer for layer in loaded.layers if isinstance(layer, PDFBlock)]
    assert pdf.get_config()["reduce_to"] == 4


def test_classifier_on_a_saved_backbone_round_trips(tmp_path):
    backbone = build_classifier(SMALL_CNN, PLAIN_HEAD, 32, seed=0).get_layer("backbone")
    backbone.save(tmp_path / "backbone.keras")
    model = build_classifier(SavedBackbone(path=str(tmp_path / "backbone.keras")), PDF_SE_HEAD, 48, seed=0)
    assert model.get_layer("preprocess").mode == "none"
    assert_round_trip(model, tmp_path / "model.keras", raw_images(48))


def test_every_pooling_the_params_allow_is_built():
    assert set(get_args(HeadParams.model_fields["pooling"].annotation)) == set(POOLING)


def trainable_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in backbone_of(model).layers if layer.trainable and layer.weights]


def test_unfreezing_four_vgg16_layers_unfreezes_the_last_four_convolutions():
    model = build_classifier(ApplicationBackbone(name="vgg16", weights="none"), PLAIN_HEAD, 32, seed=0)
    assert trainable_layers(model) == []
    expected = ["block4_conv3", "block5_conv1", "block5_conv2", "block5_conv3"]
    assert unfreeze_top(model, layers=4) == expected
    assert backbone_of(model).trainable
    assert trainable_layers(model) == expected
    assert len(model.trainable_weights) == 2 * 4 + 2 * 2  # kernels and biases: 4 convs, 2 dense


def test_unfreezing_a_fraction_of_efficientnet_keeps_batch_normalization_frozen():
    model = build_classifier(ApplicationBackbone(name="efficientnetb0", weights="none"), PLAIN_HEAD, 32, seed=0)
    unfrozen = unfreeze_top(model, fraction=0.3)
    assert len(unfrozen) == 25  # ceil(0.3 x 82 layers with weights that are not BatchNormalization)
    assert (unfrozen[0], unfrozen[-1]) == ("block6a_dwconv", "top_conv")
    assert trainable_layers(model) == unfrozen
    batch_norms = [
        layer
        for layer in backbone_of(model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)


def test_unfrozen_backbone_batch_normalization_ignores_the_training_flag(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "bn.keras")
    model = build_classifier(SavedBackbone(path=str(tmp_path / "bn.keras")), PLAIN_HEAD, 16, seed=0)
    assert unfreeze_top(model, fraction=1.0) == ["conv"]
    backbone, images = backbone_of(model), raw_images(16)
    np.testing.assert_allclose(
        backbone(images, training=True), backbone(images, training=False), atol=1e-5
    )


def test_fraction_of_ten_layers_is_not_inflated_by_floating_point(tmp_path):
    inputs = keras.Input((None, None, 3))
    features = inputs
    for index in range(10):
        features = keras.layers.Conv2D(1, 1, name=f"conv{index}")(features)
    keras.Model(inputs, features).save(tmp_path / "ten.keras")
    model = build_classifier(SavedBackbone(path=str(tmp_path / "ten.keras")), PLAIN_HEAD, 8, seed=0)
    assert unfreeze_top(model, fraction=0.3) == [
        "conv7",
        "conv8",
        "conv9",
    ]  # 0.3 x 10 = 3.0000000000000004


@pytest.mark.parametrize("choice", [{}, {"fraction": 0.5, "layers": 2}])
def test_unfreeze_top_needs_exactly_one_choice(classifier, choice):
    with pytest.raises(ValueError, match="exactly one of fraction or layers"):
        unfreeze_top(classifier, **choice)


def test_unfreezing_more_layers_than_exist_is_an_error(classifier):
    with pytest.raises(ValueError, match="cannot unfreeze 3 layers; the backbone has 2"):
        unfreeze_top(classifier, layers=3)


@pytest.mark.skipif(
    not (SHARED_WEIGHTS / "efficientnet_lite0_imagenet_notop.keras").is_file(),
    reason="no shared weights",
)
def test_classifier_on_the_shared_efficientnet_lite0_round_trips(tmp_path):
    backbone = SavedBackbone(path=str(SHARED_WEIGHTS / "efficientnet_lite0_imagenet_notop.keras"))
    model = build_classifier(backbone, PLAIN_HEAD, 64, seed=0)
    assert backbone_of(model).output_shape == (None, 2, 2, 1280)
    assert model.output_shape == (None, 1)
    assert_round_trip(model, tmp_path / "lite0.keras", raw_images(64, count=2))
