"""Stage evaluate: predictions on val and test, threshold chosen on val, metrics JSON (with the
paired model-vs-baseline AUC difference), plots, Grad-CAM of a test sample and the Markdown review
report."""

from medcls.evaluation import baseline, compare, gradcam, metrics, plots, report, scoring
from medcls.model import classifier
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def evaluate(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    settings, seed = dataset.evaluate, params.seed
    model = classifier.load_classifier(paths.model)
    predictions = scoring.predict_splits(model, paths.tfrecords, ["val", "test"])
    scoring_options = dict(rule=settings.threshold, n_bootstrap=settings.bootstrap, seed=seed)
    document = metrics.evaluate_predictions(predictions, **scoring_options)
    if settings.baseline:
        extractor = baseline.feature_extractor(dataset.backbone, dataset.image_size, seed=seed)
        baseline_rows, regularization = baseline.logistic_regression_predictions(
            extractor, paths.tfrecords, seed=seed
        )
        document["baseline"] = metrics.evaluate_predictions(baseline_rows, **scoring_options)
        document["baseline"]["method"] = (
            f"frozen backbone features + logistic regression, C={regularization:g} chosen on val"
        )
        predictions = predictions.merge(
            baseline_rows[["id", "probability"]].rename(columns={"probability": "baseline_probability"}),
            on="id",
            validate="one_to_one",
        )
        document["versus_baseline"] = compare.versus_baseline(
            predictions, ["test"], n_resamples=settings.bootstrap, seed=seed
        )
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
    gradcam.save_gradcam_grid(
        model, predictions, paths.tfrecords, document["threshold"], paths.plots / "gradcam.png",
        classes=classes, seed=seed,
    )
    figures = [paths.plots / f"{figure}.png" for figure in ("roc", "confusion", "calibration", "gradcam")]
    report.write_report(document, classes, name, paths.report, figures)
    print(f"{name}: test AUC {test['auc']} (95 % CI {test['auc_ci95']}), accuracy {test['accuracy']}")


if __name__ == "__main__":
    run_stage(evaluate)
