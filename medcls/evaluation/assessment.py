"""The evaluate stage's work as library calls: every scorer's predictions (the model, the fold
models and their ensemble, the baseline, external test sets), one metrics document with the paired
model-vs-baseline differences, the subgroups and single cases a reviewer looks at, and the figures
drawn from them.

The model's probabilities are those `medcls predict` gives: with test-time augmentation (`tta`)
averaged over the views, with `calibration: temperature` scaled by the fitted temperature, before
any threshold is chosen. The baseline is scored as it is, neither augmented nor scaled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd

from medcls.evaluation import (
    baseline,
    calibration,
    cases,
    paired,
    plots,
    scoring,
    splits,
    subgroups,
)
from medcls.evaluation.document import Evaluation
from medcls.model import classifier
from medcls.params import DatasetParams, Params, SubgroupMinSize, ThresholdRule
from medcls.pipeline.paths import DatasetPaths


@dataclass
class Assessment:
    """What evaluate writes and explains: the evaluation document (`Evaluation` as JSON), the per-image predictions, and the
    models that made them."""

    document: dict
    predictions: pd.DataFrame
    model: keras.Model
    fold_models: list[keras.Model]
    subgroup_values: pd.DataFrame  # every scored image's subgroups, data/subgroups/<name>.csv


@dataclass(frozen=True)
class Scoring:
    """What every section of a scorer's document is computed with."""

    rule: ThresholdRule
    n_bootstrap: int
    seed: int
    folded: bool  # split.folds > 1: out-of-fold and fold-ensemble rows
    source_of: pd.Series | None  # image id -> source, for a dataset of several sources
    external: list[str]  # the external test sets
    external_images: str
    by_group: bool  # external intervals resample whole groups
    # scored split -> each image's subgroup values (`subgroups.values_by_split`)
    subgroup_values: dict[str, pd.DataFrame]
    subgroup_limit: SubgroupMinSize

    @property
    def options(self) -> dict:
        return dict(rule=self.rule, n_bootstrap=self.n_bootstrap, seed=self.seed)

    @property
    def external_options(self) -> dict:
        return dict(
            images=self.external_images,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
            by_group=self.by_group,
        )


def _splits(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    return splits.evaluate_predictions(rows, **plan.options)


def _cross_validation(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    return splits.cross_validated(rows, **plan.options) if plan.folded else {}


def _by_source(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    if plan.source_of is None:
        return {}
    tables = splits.by_source(
        rows,
        plan.source_of,
        document["threshold"],
        n_bootstrap=plan.n_bootstrap,
        seed=plan.seed,
    )
    return {"by_source": tables}


def _external(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    if not plan.external:
        return {}
    sets = splits.external_metrics(
        rows, document["threshold"], plan.external, **plan.external_options
    )
    return {"external": sets}


def _ensemble_external(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    if not (plan.external and plan.folded):
        return {}
    threshold = document["cross_validation"]["threshold"]
    sets = splits.external_metrics(
        rows, threshold, plan.external, ensemble=True, **plan.external_options
    )
    return {"ensemble_external": sets}


def _subgroups(rows: pd.DataFrame, document: dict, plan: Scoring) -> dict:
    if not plan.subgroup_values:
        return {}
    options = dict(limit=plan.subgroup_limit, n_bootstrap=plan.n_bootstrap, seed=plan.seed)
    scored = {
        split: subgroups.score_subgroups(
            rows[rows["split"] == split], values, document["threshold"], **options
        )
        for split, values in plan.subgroup_values.items()
    }
    return {"subgroups": scored}


# The sections of one scorer's document (the model's, the baseline's), in order: each reads the
# rows and what the sections before it wrote (the thresholds). A new section is a function here.
SECTIONS = (_splits, _cross_validation, _by_source, _external, _ensemble_external, _subgroups)
# Test images of each kind (most confident errors, closest to the threshold) given thumbnails
CASES = 8


def score(rows: pd.DataFrame, plan: Scoring) -> dict:
    """The document of one scorer's predictions: every section of `SECTIONS` that applies."""
    document: dict = {}
    for section in SECTIONS:
        document |= section(rows, document, plan)
    return document


def assess(params: Params, dataset: DatasetParams, paths: DatasetPaths) -> Assessment:
    """Score the trained model(s) and the baseline on val, test, out-of-fold and external images;
    the returned document is checked against the typed `Evaluation`."""
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
    plan = Scoring(
        rule=settings.threshold,
        n_bootstrap=settings.bootstrap,
        seed=seed,
        folded=bool(fold_models),
        source_of=source_of,
        external=list(external),
        external_images=settings.external_images,
        by_group=settings.external_bootstrap == "group",
        subgroup_values=subgroups.values_by_split(paths.name, dataset, paths),
        subgroup_limit=settings.subgroup_min_size,
    )
    document = score(predictions, plan)
    test = predictions[predictions["split"] == "test"]
    document["cases"] = cases.review_cases(test, document["threshold"], CASES)
    if settings.tta:
        document["tta"] = list(settings.tta)
    if temperatures:
        document["calibration"] = calibration.summary(unscaled, predictions, temperatures)
        if fold_models:
            document["cross_validation"]["temperature"] = temperatures[splits.OUT_OF_FOLD]
    if settings.baseline:
        extractor = baseline.feature_extractor(dataset.backbone, dataset.image_size, seed=seed)
        baseline_rows, regularization = baseline.logistic_regression_predictions(
            extractor, paths.tfrecords, seed=seed, external=external, split_df=split_df
        )
        document["baseline"] = score(baseline_rows, plan)
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
        paired_splits = ["test"] + (
            [splits.OUT_OF_FOLD, splits.ENSEMBLE_TEST] if fold_models else []
        )
        document["versus_baseline"] = paired.versus_baseline(predictions, paired_splits, **pairing)
        external_scorers = [("external", splits.external_split)]
        if fold_models:
            external_scorers.append(("ensemble_external", splits.ensemble_external_split))
        for key, split_of in external_scorers if external else ():
            external_pairs = paired.versus_baseline(
                predictions,
                [split_of(other) for other in external],
                by_group=plan.by_group,
                **pairing,
            )
            document["versus_baseline"][key] = dict(zip(external, external_pairs.values()))
    return Assessment(
        Evaluation.model_validate(document).as_json(),
        predictions,
        model,
        fold_models,
        subgroups.values_table(plan.subgroup_values),
    )


def write_plot_data(assessment: Assessment, classes: list[str], out_dir: Path) -> None:
    """The DVC plot data: ROC, precision-recall and calibration of every split of the
    predictions on one chart each, and the test split's confusion matrix."""
    by_split = {
        split: (rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in assessment.predictions.groupby("split", sort=False)
    }
    plots.write_curve_data(by_split, assessment.document["threshold"], out_dir, classes)
