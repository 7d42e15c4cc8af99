"""The evaluate stage's work as library calls: every scorer's predictions, the evaluation document
computed from them section by section (`sections.SECTIONS`), and the figures drawn from them.

`SCORERS` is the ordered list of what gives or changes probabilities: the model (val, test and the
external test sets), the fold models (out-of-fold, their ensemble on test and on the external
sets), temperature scaling of those, and the baseline. A new scorer is one function here and one
line in `SCORERS`; its document is the entry of its name (a field of `document.Evaluation`).

The model's probabilities are those `medcls predict` gives: with test-time augmentation (`tta`)
averaged over the views, with `calibration: temperature` scaled by the fitted temperature, before
any threshold is chosen. The baseline is scored as it is, neither augmented nor scaled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd

from medcls.evaluation import baseline, calibration, paired, plots, scoring, splits, subgroups
from medcls.evaluation.document import Evaluation
from medcls.evaluation.sections import BASELINE, MODEL, Plan, Scored, compute
from medcls.model import classifier
from medcls.params import DatasetParams, Params
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
class Inputs:
    """What the scorers read: the dataset's params and what the stages before evaluate wrote."""

    dataset: DatasetParams
    seed: int
    paths: DatasetPaths
    model: keras.Model
    fold_models: list[keras.Model]  # with split.folds > 1
    split_df: pd.DataFrame | None  # with folds or several sources
    external: dict[str, Path]  # external test set -> its TFRecords

    @classmethod
    def load(cls, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> Inputs:
        folds = params.split.folds if params.split.folds > 1 else 0  # one fold: no fold models
        split_df = None
        if folds or dataset.sources:
            split_df = pd.read_csv(paths.split, keep_default_na=False)
        return cls(
            dataset=dataset,
            seed=params.seed,
            paths=paths,
            model=classifier.load_classifier(paths.model),
            fold_models=[classifier.load_classifier(paths.for_fold(i).model) for i in range(folds)],
            split_df=split_df,
            external={other: paths.external_records(other) for other in dataset.evaluate.external},
        )


def model_predictions(inputs: Inputs, scorers: dict[str, Scored]) -> None:
    """The model on val, test and each external test set, averaged over the `tta` views."""
    views = inputs.dataset.evaluate.tta
    rows = scoring.predict_with_external(
        inputs.model, inputs.paths.tfrecords, ["val", "test"], inputs.external, views=views
    )
    splits.check_val_classes(rows)  # before any scorer is fitted or tuned on val
    scorers[MODEL] = Scored(MODEL, rows, {"tta": list(views)} if views else {})


def fold_predictions(inputs: Inputs, scorers: dict[str, Scored]) -> None:
    """With folds: each fold model on its own fold (out-of-fold) and the fold models' ensemble on
    test and on each external test set, beside the model's rows."""
    if not inputs.fold_models:
        return
    model = scorers[MODEL]
    folded = scoring.cross_validated_predictions(
        inputs.fold_models,
        inputs.paths.tfrecords,
        inputs.split_df,
        external=inputs.external,
        views=inputs.dataset.evaluate.tta,
    )
    model.rows = pd.concat([model.rows, folded], ignore_index=True)


def temperature_scaling(inputs: Inputs, scorers: dict[str, Scored]) -> None:
    """With `calibration: temperature`: the model's probabilities scaled by a temperature fitted on
    val (the fold models' on out-of-fold), and the Brier score and ECE before and after."""
    if inputs.dataset.evaluate.calibration != "temperature":
        return
    model = scorers[MODEL]
    scaled, model.temperatures = calibration.temperature_scaled(model.rows)
    model.document["calibration"] = calibration.summary(model.rows, scaled, model.temperatures)
    model.rows = scaled


def baseline_predictions(inputs: Inputs, scorers: dict[str, Scored]) -> None:
    """With `evaluate.baseline`: a logistic regression on the frozen backbone's features, scored
    like the model on every split it has."""
    if not inputs.dataset.evaluate.baseline:
        return
    dataset, seed = inputs.dataset, inputs.seed
    extractor = baseline.feature_extractor(dataset.backbone, dataset.image_size, seed=seed)
    rows, regularization = baseline.logistic_regression_predictions(
        extractor,
        inputs.paths.tfrecords,
        seed=seed,
        external=inputs.external,
        split_df=inputs.split_df,
    )
    method = f"frozen backbone features + logistic regression, C={regularization:g} chosen on val"
    scorers[BASELINE] = Scored(BASELINE, rows, {"method": method})


# In order: each adds a scorer's predictions or changes those before it.
SCORERS = (model_predictions, fold_predictions, temperature_scaling, baseline_predictions)


def assess(params: Params, dataset: DatasetParams, paths: DatasetPaths) -> Assessment:
    """Score the trained model(s) and the baseline on val, test, out-of-fold and external images;
    the returned document is checked against the typed `Evaluation`."""
    inputs = Inputs.load(params, dataset, paths)
    scorers: dict[str, Scored] = {}
    for scorer in SCORERS:
        scorer(inputs, scorers)
    settings = dataset.evaluate
    subgroup_values = subgroups.values_by_split(paths.name, dataset, paths)
    plan = Plan(
        scorers=scorers,
        rule=settings.threshold,
        n_bootstrap=settings.bootstrap,
        seed=params.seed,
        folded=bool(inputs.fold_models),
        source_of=inputs.split_df.set_index("path")["source"] if dataset.sources else None,
        external=list(inputs.external),
        external_images=settings.external_images,
        by_group=settings.external_bootstrap == "group",
        subgroup_values=subgroup_values,
        subgroup_limit=settings.subgroup_min_size,
    )
    document = compute(plan)
    predictions = scorers[MODEL].rows
    if BASELINE in scorers:
        predictions = paired.with_baseline(predictions, scorers[BASELINE].rows)
    return Assessment(
        Evaluation.model_validate(document).as_json(),
        predictions,
        inputs.model,
        inputs.fold_models,
        subgroups.values_table(subgroup_values),
    )


def write_plot_data(assessment: Assessment, classes: list[str], out_dir: Path) -> None:
    """The DVC plot data: ROC, precision-recall and calibration of every split of the
    predictions on one chart each, and the test split's confusion matrix."""
    by_split = {
        split: (rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in assessment.predictions.groupby("split", sort=False)
    }
    plots.write_curve_data(by_split, assessment.document["threshold"], out_dir, classes)
