"""The frozen-features baseline and the prediction rows it shares with the model's evaluation."""

import numpy as np
import pytest

from medcls.data.manifest import build_manifest
from medcls.data.splitting import grouped_stratified_split
from medcls.demo import synthetic
from medcls.evaluation import baseline, scoring
from medcls.evaluation.metrics import roc_auc
from medcls.images.tfrecords import write_tfrecords
from medcls.params import RoiParams, SmallCnnBackbone

SIZE = 32
SMALL_CNN = SmallCnnBackbone(filters=[8, 16])


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Synthetic ultrasound TFRecords (benign and malignant lesions differ in texture and shape)."""
    raw = synthetic.make_busi(tmp_path_factory.mktemp("busi"), n_per_class=24)
    manifest, _ = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)
    manifest["split"] = grouped_stratified_split(
        manifest, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0
    )
    out = tmp_path_factory.mktemp("records")
    write_tfrecords(
        manifest, raw, out, images_per_shard=8, workers=1,
        roi=RoiParams(use_mask=True, margin=0.1, mask_background=False, keep_aspect=True), size=SIZE,
    )
    return out, manifest


def test_model_outputs_keep_the_rows_of_the_split_in_order(records):
    out, manifest = records
    extractor = baseline.feature_extractor(SMALL_CNN, SIZE, seed=0)
    rows, features = scoring.model_outputs(extractor, out, "val", batch_size=5)
    expected = manifest[manifest["split"] == "val"]
    assert sorted(rows["id"]) == sorted(expected["path"])
    assert dict(zip(rows["id"], rows["label"])) == dict(zip(expected["path"], expected["label"]))
    assert features.shape == (len(expected), 16)  # pooled channels of the last convolution


def test_baseline_scores_val_and_test_with_a_regularisation_chosen_from_the_grid(records):
    out, manifest = records
    extractor = baseline.feature_extractor(SMALL_CNN, SIZE, seed=0)
    rows, regularization = baseline.logistic_regression_predictions(extractor, out, seed=0)
    assert regularization in baseline.C_GRID
    assert list(rows["split"].unique()) == ["val", "test"]
    for split in ("val", "test"):
        assert (rows["split"] == split).sum() == (manifest["split"] == split).sum()
    assert rows["probability"].between(0, 1).all()
    # random convolution features still separate the synthetic classes better than chance
    val = rows[rows["split"] == "val"]
    assert roc_auc(val["label"], val["probability"]) > 0.7


def test_baseline_is_deterministic(records):
    out, _ = records
    runs = [
        baseline.logistic_regression_predictions(
            baseline.feature_extractor(SMALL_CNN, SIZE, seed=0), out, seed=0
        )[0]["probability"].to_numpy()
        for _ in range(2)
    ]
    np.testing.assert_allclose(*runs)
