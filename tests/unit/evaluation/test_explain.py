"""Grad-CAM: the feature layer is found for every backbone kind, heat maps are finite and in [0, 1],
confident (saturated) decisions still get a map, and the outcome grid is drawn from TFRecords."""

import keras
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from medcls.data.manifest import build_manifest
from medcls.data.splitting import grouped_stratified_split
from medcls.demo import synthetic
from medcls.evaluation import cases, gradcam
from medcls.evaluation.scoring import predict_splits
from medcls.images.tfrecords import write_tfrecords
from medcls.model.blocks import SEBlock
from medcls.model.classifier import build_classifier
from medcls.params import ApplicationBackbone, RoiParams, SavedBackbone
from tests.support.models import PDF_SE_HEAD, PLAIN_HEAD, SMALL_CNN, raw_images

SIZE = 32
ROI = dict(
    roi=RoiParams(use_mask=True, margin=0.1, mask_background=False, keep_aspect=True), size=SIZE
)


def assert_valid_heatmaps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    heatmaps, probabilities = gradcam.grad_cam(model, images)
    assert heatmaps.shape == images.shape[:3]
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1
    expected = model.predict(images, verbose=0).reshape(-1)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    return heatmaps


@pytest.fixture(scope="module")
def classifier() -> keras.Model:
    return build_classifier(SMALL_CNN, PDF_SE_HEAD, SIZE, seed=0)


def test_small_cnn_with_head_blocks_is_explained_at_the_last_block(classifier):
    assert isinstance(gradcam.last_spatial_layer(classifier), SEBlock)
    heatmaps = assert_valid_heatmaps(classifier, raw_images(SIZE))
    assert heatmaps.max() == pytest.approx(1.0)  # each map is scaled to a peak of 1


def test_saved_backbone_file_is_explained_at_the_backbone(tmp_path):
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    backbone = keras.Model(inputs, keras.layers.MaxPooling2D()(features))
    backbone.save(tmp_path / "backbone.keras")
    model = build_classifier(
        SavedBackbone(path=str(tmp_path / "backbone.keras")), PLAIN_HEAD, SIZE, seed=0
    )
    assert gradcam.last_spatial_layer(model).name == "backbone"
    assert_valid_heatmaps(model, raw_images(SIZE))


def test_keras_application_backbone_is_explained_at_the_backbone():
    backbone = ApplicationBackbone(name="efficientnetb0", weights="none")
    model = build_classifier(backbone, PLAIN_HEAD, SIZE, seed=0)
    assert gradcam.last_spatial_layer(model).name == "backbone"
    assert_valid_heatmaps(model, raw_images(SIZE, 2))


def test_saturated_probability_still_gets_the_same_map(classifier):
    """The map follows the logit, so a probability of exactly 1.0 does not zero the gradient."""
    images = raw_images(SIZE)
    before, _ = gradcam.grad_cam(classifier, images, threshold=0.0)
    output = classifier.get_layer("probability")
    bias = keras.ops.convert_to_numpy(output.bias)
    try:
        output.bias.assign(bias + 60.0)
        after, probabilities = gradcam.grad_cam(classifier, images, threshold=0.0)
    finally:
        output.bias.assign(bias)
    assert (probabilities == 1.0).all()
    np.testing.assert_allclose(after, before, atol=1e-5)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, classifier):
    """TFRecords of a small BUS_UC stand-in and the classifier's val/test predictions on them."""
    raw = synthetic.make_bus_uc(tmp_path_factory.mktemp("bus_uc"), n_per_class=10, size=48)
    manifest, _ = build_manifest(raw, "bus_uc", synthetic.BUS_UC_CLASSES, workers=1)
    manifest["split"] = grouped_stratified_split(
        manifest, {"train": 0.4, "val": 0.3, "test": 0.3}, seed=0
    )
    records = tmp_path_factory.mktemp("records")
    write_tfrecords(manifest, raw, records, images_per_shard=4, workers=1, **ROI)
    return records, predict_splits(classifier, records, ["val", "test"])


def test_outcome_sample_is_seeded_and_capped_per_outcome(evaluated):
    _, predictions = evaluated
    threshold = float(predictions["probability"].median())
    sample = gradcam.outcome_sample(predictions, threshold, seed=3, per_outcome=2)
    again = gradcam.outcome_sample(predictions.sample(frac=1, random_state=9), threshold, seed=3, per_outcome=2)
    assert sample["id"].tolist() == again["id"].tolist()  # input order does not matter
    assert (sample["split"] == "test").all() and sample["outcome"].value_counts().max() <= 2
    positive = sample["probability"] >= threshold
    expected = np.where(sample["label"] == 1, np.where(positive, "TP", "FN"), np.where(positive, "FP", "TN"))
    assert sample["outcome"].tolist() == expected.tolist()


def test_gradcam_grid_is_written(evaluated, classifier, tmp_path):
    records, predictions = evaluated
    out_png = tmp_path / "plots" / "gradcam.png"
    gradcam.save_gradcam_grid(
        classifier, predictions, records, 0.5, out_png, classes=synthetic.BUS_UC_CLASSES, seed=0
    )
    height, width = imread(out_png).shape[:2]
    assert height > width / 2  # four outcome rows of two panels


def test_unknown_ids_name_the_stale_predictions(evaluated, classifier, tmp_path):
    records, predictions = evaluated
    stale = predictions.assign(id=predictions["id"] + ".old")
    with pytest.raises(ValueError, match="different runs"):
        gradcam.save_gradcam_grid(
            classifier, stale, records, 0.5, tmp_path / "g.png", classes=["a", "b"], seed=0
        )


def test_case_thumbnails_one_file_per_case_named_by_its_id(evaluated, classifier, tmp_path):
    records, predictions = evaluated
    test = predictions[predictions["split"] == "test"]
    review = cases.review_cases(test, 0.5, 2)
    rows = pd.DataFrame(review["confident_errors"] + review["borderline"]).drop_duplicates("id")
    written = gradcam.save_case_thumbnails(
        classifier, rows, records, 0.5, tmp_path / "cases", classes=synthetic.BUS_UC_CLASSES
    )
    assert [path.name for path in written] == [cases.thumbnail_name(key) for key in rows["id"]]
    assert sorted(tmp_path.joinpath("cases").iterdir()) == sorted(written)
    assert all(imread(path).shape[2] in (3, 4) for path in written)
