"""Stage evaluate: predictions on val, test and the external test sets, threshold chosen on val,
metrics JSON (with the paired model-vs-baseline AUC differences), plots, Grad-CAM of a test sample
and the Markdown review report.

With cross-validation folds (split.folds > 1) also the out-of-fold predictions of the fold models
and their ensemble on test, the baseline treated alike; Grad-CAM then explains the ensemble.
"""

import pandas as pd

from medcls.evaluation import baseline, compare, gradcam, metrics, plots, report, scoring
from medcls.model import classifier
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def evaluate(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    settings, seed = dataset.evaluate, params.seed
    model = classifier.load_classifier(paths.model)
    external = {other: paths.external_records(other) for other in settings.external}
    predictions = scoring.predict_with_external(model, paths.tfrecords, ["val", "test"], external)
    split_df, fold_models = None, []
    if params.split.folds > 1:
        split_df = pd.read_csv(paths.split, keep_default_na=False)
        fold_models = [
            classifier.load_classifier(paths.for_fold(fold).model)
            for fold in range(params.split.folds)
        ]
        cross_validated = scoring.cross_validated_predictions(fold_models, paths.tfrecords, split_df)
        predictions = pd.concat([predictions, cross_validated], ignore_index=True)
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
        if external:
            document["external"] = metrics.external_metrics(
                rows, document["threshold"], list(external), **external_options
            )
        return document

    document = scored(predictions)
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
        document["versus_baseline"] = compare.versus_baseline(predictions, paired_splits, **pairing)
        if external:
            external_pairs = compare.versus_baseline(
                predictions,
                [metrics.external_split(other) for other in external],
                by_group=by_group,
                **pairing,
            )
            document["versus_baseline"]["external"] = dict(zip(external, external_pairs.values()))
    metrics.validate_metrics(document)
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    committed = [column for column in scoring.COMMITTED_COLUMNS if column in predictions]
    predictions[committed].to_csv(paths.predictions, index=False)
    write_json(paths.metrics(), document)

    by_split = {
        split: (rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in predictions.groupby("split")
    }
    test, classes = document["test"], dataset.classes
    plots.write_curve_data(*by_split["test"], document["threshold"], paths.plots, classes)
    plots.save_roc_png(by_split, paths.plots / "roc.png", f"{name}: ROC")
    plots.save_confusion_png(
        test["tp"], test["fp"], test["tn"], test["fn"], classes,
        paths.plots / "confusion.png", f"{name}: test, threshold {document['threshold']:.3f}",
    )
    plots.save_calibration_png(*by_split["test"], paths.plots / "calibration.png", f"{name}: test")
    if fold_models:  # explain what `medcls predict` uses: the ensemble at its threshold
        explained = dict(
            model=fold_models,
            threshold=document["cross_validation"]["threshold"],
            split=metrics.ENSEMBLE_TEST,
        )
    else:
        explained = dict(model=model, threshold=document["threshold"], split="test")
    gradcam.save_gradcam_grid(
        predictions=predictions, tfrecord_dir=paths.tfrecords, out_png=paths.plots / "gradcam.png",
        classes=classes, seed=seed, **explained,
    )
    figures = [paths.plots / f"{figure}.png" for figure in ("roc", "confusion", "calibration", "gradcam")]
    report.write_report(document, classes, name, paths.report, figures)
    print(f"{name}: test AUC {test['auc']} (95 % CI {test['auc_ci95']}), accuracy {test['accuracy']}")


if __name__ == "__main__":
    run_stage(evaluate)
