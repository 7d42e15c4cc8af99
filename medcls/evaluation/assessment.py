"""The evaluate stage's work as library calls: every scorer's predictions (the model, the fold
models and their ensemble, the baseline, external test sets), one metrics document with the paired
model-vs-baseline differences, and the figures drawn from them.

The model's probabilities are those `medcls predict` gives: with test-time augmentation (`tta`)
averaged over the views, with `calibration: temperature` scaled by the fitted temperature, before
any threshold is chosen. The baseline is scored as it is, neither augmented nor scaled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd

from medcls.evaluation import baseline, calibration, metrics, paired, plots, scoring
from medcls.model import classifier
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths


@dataclass
class Assessment:
    """What evaluate writes and explains: the metrics document, the per-image predictions, and the
    models that made them."""

    document: dict
    predictions: pd.DataFrame
    model: keras.Model
    fold_models: list[keras.Model]


def assess(params: Params, dataset: DatasetParams, paths: DatasetPaths) -> Assessment:
    """Score the trained model(s) and the baseline on val, test, out-of-fold and external images;
    the returned document is validated (schema and internal agreement)."""
    model = classifier.load_classifier(paths.model)
    settings, seed = dataset.evaluate, params.seed
    external = {other: paths.external_records(other) for other in settings.external}
    predictions = scoring.predict_with_external(
        model, paths.tfrecords, ["val", "test"], external, views=settings.tta
    )
    split_df, source_of, fold_models = None, None, []
    if params.split.folds > 1 or dataset.sources:
        split_df = pd.read_csv(paths.split, keep_default_na=False)
    if dataset.sources:  # metrics per source beside the pooled ones
        source_of = split_df.set_index("path")["source"]
    if params.split.folds > 1:
        fold_models = [
            classifier.load_classifier(paths.for_fold(fold).model)
            for fold in range(params.split.folds)
        ]
        cross_validated = scoring.cross_validated_predictions(
            fold_models, paths.tfrecords, split_df, external=external, views=settings.tta
        )
        predictions = pd.concat([predictions, cross_validated], ignore_index=True)
    temperatures = {}
    if settings.calibration == "temperature":
        unscaled = predictions
        predictions, temperatures = calibration.temperature_scaled(predictions)
    scoring_options = dict(rule=settings.threshold, n_bootstrap=settings.bootstrap, seed=seed)
    by_group = settings.external_bootstrap == "group"
    external_options = dict(
        images=settings.external_images, n_bootstrap=settings.bootstrap, seed=seed, by_group=by_group
    )

    def scored(rows: pd.DataFrame) -> dict:
        """The metrics document of one scorer's rows (the model's or the baseline's)."""
        document = metrics.evaluate_predictions(rows, **scoring_options)
        if fold_models:
            document |= metrics.cross_validated(rows, **scoring_options)
        if source_of is not None:
            document["by_source"] = metrics.by_source(
                rows, source_of, document["threshold"], n_bootstrap=settings.bootstrap, seed=seed
            )
        if external:
            document["external"] = metrics.external_metrics(
                rows, document["threshold"], list(external), **external_options
            )
        if external and fold_models:
            document["ensemble_external"] = metrics.external_metrics(
                rows,
                document["cross_validation"]["threshold"],
                list(external),
                ensemble=True,
                **external_options,
            )
        return document

    document = scored(predictions)
    if settings.tta:
        document["tta"] = list(settings.tta)
    if temperatures:
        document["calibration"] = calibration.summary(unscaled, predictions, temperatures)
        if fold_models:
            document["cross_validation"]["temperature"] = temperatures[metrics.OUT_OF_FOLD]
    if settings.baseline:
        extractor = baseline.feature_extractor(dataset.backbone, dataset.image_size, seed=seed)
        baseline_rows, regularization = baseline.logistic_regression_predictions(
            extractor, paths.tfrecords, seed=seed, external=external, split_df=split_df
        )
        document["baseline"] = scored(baseline_rows)
        document["baseline"]["method"] = (
            f"frozen backbone features + logistic regression, C={regularization:g} chosen on val"
        )
        predictions = predictions.merge(
            baseline_rows[["split", "id", "probability"]].rename(
                columns={"probability": "baseline_probability"}
            ),
            on=["split", "id"],
            validate="one_to_one",
        )
        pairing = dict(n_resamples=settings.bootstrap, seed=seed)
        paired_splits = ["test"] + ([metrics.OUT_OF_FOLD, metrics.ENSEMBLE_TEST] if fold_models else [])
        document["versus_baseline"] = paired.versus_baseline(predictions, paired_splits, **pairing)
        external_scorers = [("external", metrics.external_split)]
        if fold_models:
            external_scorers.append(("ensemble_external", metrics.ensemble_external_split))
        for key, split_of in external_scorers if external else ():
            external_pairs = paired.versus_baseline(
                predictions, [split_of(other) for other in external], by_group=by_group, **pairing
            )
            document["versus_baseline"][key] = dict(zip(external, external_pairs.values()))
    metrics.validate_metrics(document)
    return Assessment(document, predictions, model, fold_models)


def save_figures(assessment: Assessment, classes: list[str], name: str, out_dir: Path) -> list[Path]:
    """The DVC plot data of the test split and the ROC, confusion and calibration PNGs; returns
    the PNGs."""
    document, predictions = assessment.document, assessment.predictions
    by_split = {
        split: (rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in predictions.groupby("split")
    }
    test = document["test"]
    plots.write_curve_data(*by_split["test"], document["threshold"], out_dir, classes)
    plots.save_roc_png(by_split, out_dir / "roc.png", f"{name}: ROC")
    plots.save_confusion_png(
        test["tp"], test["fp"], test["tn"], test["fn"], classes,
        out_dir / "confusion.png", f"{name}: test, threshold {document['threshold']:.3f}",
    )
    plots.save_calibration_png(*by_split["test"], out_dir / "calibration.png", f"{name}: test")
    return [out_dir / f"{figure}.png" for figure in ("roc", "confusion", "calibration")]
