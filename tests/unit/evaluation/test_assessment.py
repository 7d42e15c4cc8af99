"""The evaluate stage's assessment with everything on: cross-validation folds, an external test
set, test-time augmentation and temperature scaling, on small generated data with untrained
models; and `medcls predict` giving the probabilities it reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import real_data
from medcls import predict
from medcls.data.manifest import build_manifest
from medcls.data.splitting import cross_validation_folds, grouped_stratified_split
from medcls.demo import synthetic
from medcls.evaluation import assessment, calibration, metrics, splits
from medcls.evaluation.report import write_report
from medcls.images import tfrecord_reader, tfrecords
from medcls.model.classifier import build_classifier
from medcls.params import DatasetParams, validate
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from tests.support.builders import tiny_pipeline_params

NAME, OTHER, FOLDS = "busi", "bus_uc", 2
EXTERNAL, ENSEMBLE_EXTERNAL = splits.external_split(OTHER), splits.ensemble_external_split(OTHER)


def records(manifest, raw: Path, out: Path, dataset: DatasetParams) -> None:
    tfrecords.write_tfrecords(
        manifest, raw, out, images_per_shard=16, workers=1, roi=dataset.roi,
        size=dataset.image_size,
    )


def untrained_model(dataset: DatasetParams, seed: int, out: Path) -> None:
    """A classifier whose output layer is drawn at random, so that its probabilities spread."""
    model = build_classifier(dataset.backbone, dataset.head, dataset.image_size, seed=seed)
    output = model.get_layer("probability")
    kernel, bias = output.get_weights()
    output.set_weights([np.random.default_rng(seed).normal(0, 3, kernel.shape), bias])
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder as the stages before evaluate leave it, and the assessment of it."""
    root = tmp_path_factory.mktemp("assessment")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        raw = synthetic.make_busi(root / "sources" / NAME, n_per_class=14)
        raw_other = synthetic.make_bus_uc(root / "sources" / OTHER, n_per_class=6)
        settings = tiny_pipeline_params({NAME: raw, OTHER: raw_other})
        settings["datasets"][NAME]["evaluate"].update(
            external=[OTHER], tta=["flip_horizontal"], calibration="temperature"
        )
        settings["split"].update(folds=FOLDS, fold_ids=list(range(FOLDS)))
        params = validate(settings)
        dataset, paths = params.datasets[NAME], DatasetPaths(NAME)
        manifest, _ = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)
        manifest["split"] = grouped_stratified_split(manifest, params.split.fractions, params.seed)
        manifest["fold"] = cross_validation_folds(manifest, manifest["split"], FOLDS, params.seed)
        paths.split.parent.mkdir(parents=True)
        manifest.to_csv(paths.split, index=False)
        records(manifest, raw, paths.tfrecords, dataset)
        other, _ = build_manifest(raw_other, "bus_uc", synthetic.BUS_UC_CLASSES, workers=1)
        records(other.assign(split="test"), raw_other, paths.external_records(OTHER), dataset)
        untrained_model(dataset, 0, paths.model)
        for fold in range(FOLDS):
            untrained_model(dataset, 1 + fold, paths.for_fold(fold).model)
        result = assessment.assess(params, dataset, paths)
        write_json(paths.evaluation, result.document)
        yield root, params, result


def test_the_fold_ensemble_is_scored_on_the_external_set_beside_the_model(project):
    _, _, result = project
    document, predictions = result.document, result.predictions
    images = (predictions["split"] == EXTERNAL).sum()
    assert document["external"][OTHER]["n"] == document["ensemble_external"][OTHER]["n"] == images > 0
    assert set(document["versus_baseline"]["ensemble_external"]) == {OTHER}
    assert set(document["baseline"]["ensemble_external"]) == {OTHER}
    ensemble = predictions[predictions["split"] == ENSEMBLE_EXTERNAL]
    expected = metrics.binary_metrics(
        ensemble["label"], ensemble["probability"], document["cross_validation"]["threshold"]
    )
    assert {key: document["ensemble_external"][OTHER][key] for key in expected} == expected


def test_calibration_is_reported_for_every_split_of_both_scorers(project):
    _, _, result = project
    document = result.document
    assert document["tta"] == ["flip_horizontal"]
    settings = document["calibration"]
    assert settings["temperature"] > 0 and document["cross_validation"]["temperature"] > 0
    splits = {"val", "test", EXTERNAL, "out_of_fold", "ensemble_test", ENSEMBLE_EXTERNAL}
    assert set(settings["before"]) == set(settings["after"]) == splits
    assert settings["after"]["test"] == {key: document["test"][key] for key in ("brier", "ece")}


def test_predict_gives_the_probabilities_evaluate_reports(project):
    """The fold ensemble (what `medcls predict` uses with folds) and the single model, each with
    its views and temperature, on the test images as the roi stage prepared them."""
    root, params, result = project
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        ensemble = predict.Predictor.for_dataset(NAME, params)
        paths = DatasetPaths(NAME)
        test = {
            record["id"].decode(): record["image"]
            for record in tfrecord_reader.read_split(paths.tfrecords, "test").as_numpy_iterator()
        }
    document, predictions = result.document, result.predictions
    assert ensemble.views == ["flip_horizontal"] and len(ensemble.models) == FOLDS
    assert ensemble.temperature == document["cross_validation"]["temperature"]
    single = predict.Predictor(
        models=[result.model], classes=ensemble.classes, threshold=document["threshold"],
        image_size=ensemble.image_size, roi=ensemble.roi, views=document["tta"],
        temperature=document["calibration"]["temperature"],
    )
    for predictor, split in ((ensemble, "ensemble_test"), (single, "test")):
        rows = predictions[predictions["split"] == split]
        images = np.stack([test[key] for key in rows["id"]])
        reported = rows["probability"].to_numpy()
        assert reported.std() > 1e-4  # the untrained models do not answer one constant
        np.testing.assert_allclose(predictor.probabilities(images), reported, atol=1e-6)
    unscaled = calibration.apply_temperature(reported, 1 / single.temperature)  # undo the scaling
    assert not np.allclose(unscaled, reported, atol=1e-3)


def test_the_report_shows_the_ensemble_on_the_external_set_and_the_calibration(project, tmp_path):
    _, _, result = project
    out_md = tmp_path / "report.md"
    write_report(result.document, synthetic.BUSI_CLASSES, NAME, out_md, [])
    text = out_md.read_text()
    assert f"| {OTHER} | model |" in text and f"| {OTHER} | fold ensemble |" in text
    assert "## Calibration" in text and "flip_horizontal" in text
    ece = result.document["calibration"]["before"][ENSEMBLE_EXTERNAL]["ece"]
    assert f"| {ENSEMBLE_EXTERNAL} |" in text and f"{ece:.3f} →" in text


def test_the_real_data_table_has_a_row_for_the_fold_ensemble(project, tmp_path):
    _, _, result = project
    document = result.document
    paths = DatasetPaths(NAME)
    (tmp_path / "reports").mkdir()
    write_json(tmp_path / paths.evaluation, document)
    write_json(tmp_path / paths.summary("train"), {"seconds": 60})
    params = {"datasets": {NAME: {"backbone": {"name": "small_cnn"}}}}
    row = next(
        line for line in real_data.table(tmp_path, params).splitlines() if "fold models" in line
    )
    external = document["ensemble_external"][OTHER]["auc"]
    assert f"| {document['ensemble_test']['auc']:.3f}" in row and f"{OTHER}: {external:.3f}" in row
