"""Stage evaluate: predictions on val and test, threshold chosen on val, metrics JSON and plots."""

from medcls import metrics, models, plots, prediction
from medcls.config import DatasetPaths, run_stage
from medcls.reporting import write_json


def evaluate(name: str, params: dict, dataset: dict, paths: DatasetPaths) -> None:
    model = models.load_classifier(paths.model)
    predictions = prediction.predict_splits(model, paths.tfrecords, ["val", "test"])
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(paths.predictions, index=False)

    settings = dataset["evaluate"]
    document = metrics.evaluate_predictions(
        predictions, rule=settings["threshold"], n_bootstrap=settings["bootstrap"], seed=params["seed"]
    )
    metrics.validate_metrics(document)
    write_json(paths.metrics(), document)

    by_split = {
        split: (rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in predictions.groupby("split")
    }
    test, classes = document["test"], dataset["classes"]
    plots.write_curve_data(*by_split["test"], document["threshold"], paths.plots, classes)
    plots.save_roc_png(by_split, paths.plots / "roc.png", f"{name}: ROC")
    plots.save_confusion_png(
        test["tp"], test["fp"], test["tn"], test["fn"], classes,
        paths.plots / "confusion.png", f"{name}: test, threshold {document['threshold']:.3f}",
    )
    plots.save_calibration_png(*by_split["test"], paths.plots / "calibration.png", f"{name}: test")
    print(f"{name}: test AUC {test['auc']} (95 % CI {test['auc_ci95']}), accuracy {test['accuracy']}")


if __name__ == "__main__":
    run_stage(evaluate)
