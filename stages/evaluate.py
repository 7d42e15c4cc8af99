"""Stage evaluate: predictions on val, test and the external test sets, threshold chosen on val,
the evaluation document reports/<name>.json (with the paired model-vs-baseline AUC differences) and
its headline scalars metrics/<name>.json, every scored image's subgroups, the plot data DVC draws,
Grad-CAM of a test sample and of single cases, the model card and the Markdown review report.

With cross-validation folds (split.folds > 1) also the out-of-fold predictions of the fold models
and their ensemble on test, the baseline treated alike; Grad-CAM then explains the ensemble.
"""

import shutil

import pandas as pd

from medcls.evaluation import assessment, card, gradcam, report, scoring, splits
from medcls.evaluation.document import Evaluation, headline
from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import write_json, written_atomically
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def evaluate(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    result = assessment.assess(params, dataset, paths)
    document, predictions, classes = result.document, result.predictions, dataset.classes
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    committed = [column for column in scoring.COMMITTED_COLUMNS if column in predictions]
    predictions[committed].to_csv(paths.predictions, index=False)
    write_json(paths.evaluation, document)
    headline_scalars = headline(Evaluation.model_validate(document)).as_json()
    write_json(paths.metrics(), headline_scalars)
    with written_atomically(paths.subgroups) as partial:
        result.subgroup_values.to_csv(partial, index=False)

    assessment.write_plot_data(result, classes, paths.plots)
    if result.fold_models:  # explain what `medcls predict` uses: the ensemble at its threshold
        explained = dict(
            model=result.fold_models,
            threshold=document["cross_validation"]["threshold"],
            split=splits.ENSEMBLE_TEST,
        )
    else:
        explained = dict(model=result.model, threshold=document["threshold"], split="test")
    gradcam.save_gradcam_grid(
        predictions=predictions, tfrecord_dir=paths.tfrecords, out_png=paths.plots / "gradcam.png",
        classes=classes, seed=params.seed, **explained,
    )
    write_case_thumbnails(result, classes, paths)
    written = card.model_card(
        name, params, dataset, headline_scalars, document, card.read_inputs(name, paths)
    )
    write_json(paths.card(".json"), written)
    with written_atomically(paths.card(".md")) as partial:
        partial.write_text(card.card_markdown(written))
    report.write_report(
        document, classes, name, paths.report, [paths.plots / "gradcam.png"], cases=paths.cases
    )
    test = {key: _rounded(value) for key, value in document["test"].items()}
    print(f"{name}: test AUC {test['auc']} {test['auc_ci95']}, accuracy {test['accuracy']}")


def _rounded(value):
    """Three decimals for a number or each number of a list; None stays None."""
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return round(value, 3) if isinstance(value, float) else value


def write_case_thumbnails(
    result: assessment.Assessment, classes: list[str], paths: DatasetPaths
) -> None:
    """Grad-CAM thumbnails of the test cases the evaluation lists (the model's decisions), in a
    folder of their own, emptied first."""
    shown = [case for kind in result.document["cases"].values() for case in kind]
    rows = pd.DataFrame(shown, columns=["id", "label", "probability"]).drop_duplicates("id")
    shutil.rmtree(paths.cases, ignore_errors=True)
    paths.cases.mkdir(parents=True)
    gradcam.save_case_thumbnails(
        result.model, rows, paths.tfrecords, result.document["threshold"], paths.cases,
        classes=classes,
    )


if __name__ == "__main__":
    run_stage(evaluate)
