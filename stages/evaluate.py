"""Stage evaluate: predictions on val, test and the external test sets, threshold chosen on val,
the evaluation document reports/<name>.json (with the paired model-vs-baseline AUC differences) and
its headline scalars metrics/<name>.json, the plot data DVC draws, Grad-CAM of a test sample and
the Markdown review report.

With cross-validation folds (split.folds > 1) also the out-of-fold predictions of the fold models
and their ensemble on test, the baseline treated alike; Grad-CAM then explains the ensemble.
"""

from medcls.evaluation import assessment, gradcam, metrics, report, scoring
from medcls.evaluation.document import Evaluation, headline
from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def evaluate(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    result = assessment.assess(params, dataset, paths)
    document, predictions, classes = result.document, result.predictions, dataset.classes
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    committed = [column for column in scoring.COMMITTED_COLUMNS if column in predictions]
    predictions[committed].to_csv(paths.predictions, index=False)
    write_json(paths.evaluation, document)
    write_json(paths.metrics(), headline(Evaluation.model_validate(document)).as_json())

    assessment.write_plot_data(result, classes, paths.plots)
    if result.fold_models:  # explain what `medcls predict` uses: the ensemble at its threshold
        explained = dict(
            model=result.fold_models,
            threshold=document["cross_validation"]["threshold"],
            split=metrics.ENSEMBLE_TEST,
        )
    else:
        explained = dict(model=result.model, threshold=document["threshold"], split="test")
    gradcam.save_gradcam_grid(
        predictions=predictions, tfrecord_dir=paths.tfrecords, out_png=paths.plots / "gradcam.png",
        classes=classes, seed=params.seed, **explained,
    )
    report.write_report(document, classes, name, paths.report, [paths.plots / "gradcam.png"])
    test = document["test"]
    print(f"{name}: test AUC {test['auc']} (95 % CI {test['auc_ci95']}), accuracy {test['accuracy']}")


if __name__ == "__main__":
    run_stage(evaluate)
