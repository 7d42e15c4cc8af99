"""Stage evaluate: predictions on val, test and the external test sets, threshold chosen on val,
metrics JSON (with the paired model-vs-baseline AUC differences), plots, Grad-CAM of a test sample
and the Markdown review report.

With cross-validation folds (split.folds > 1) also the out-of-fold predictions of the fold models
and their ensemble on test, the baseline treated alike; Grad-CAM then explains the ensemble.
"""

import shutil

import pandas as pd

from medcls.evaluation import assessment, card, cases, gradcam, metrics, report, scoring, subgroups
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage

CASES = 8  # thumbnails of the most confident errors, and of the images closest to the threshold


def evaluate(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    result = assessment.assess(params, dataset, paths)
    document, predictions, classes = result.document, result.predictions, dataset.classes
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    committed = [column for column in scoring.COMMITTED_COLUMNS if column in predictions]
    predictions[committed].to_csv(paths.predictions, index=False)
    write_json(paths.metrics(), document)

    figures = assessment.save_figures(result, classes, name, paths.plots)
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
    details = reviewer_details(name, params, dataset, paths, result)
    card.write_card(name, params, dataset, paths, headline=document, details=details)
    report.write_report(document, classes, name, paths.report, [*figures, paths.plots / "gradcam.png"])
    test = document["test"]
    print(f"{name}: test AUC {test['auc']} (95 % CI {test['auc_ci95']}), accuracy {test['accuracy']}")


def reviewer_details(
    name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths, result
) -> dict:
    """Subgroups (and every scored image's values), the single cases with their thumbnails."""
    document, predictions, threshold = result.document, result.predictions, result.document["threshold"]
    scores, values = subgroups.evaluate_subgroups(
        predictions, threshold, name, dataset, paths, seed=params.seed
    )
    paths.subgroups.parent.mkdir(parents=True, exist_ok=True)
    values.to_csv(paths.subgroups, index=False)
    test = predictions[predictions["split"] == "test"]
    review = cases.review_cases(test, threshold, CASES)
    shutil.rmtree(paths.cases, ignore_errors=True)
    paths.cases.mkdir(parents=True)
    shown = pd.DataFrame(review["confident_errors"] + review["borderline"]).drop_duplicates("id")
    gradcam.save_case_thumbnails(
        result.model, shown, paths.tfrecords, threshold, paths.cases, classes=dataset.classes
    )
    details = {"subgroups": scores, "cases": review}
    return details | {key: document[key] for key in ("calibration", "baseline") if key in document}


if __name__ == "__main__":
    run_stage(evaluate)
