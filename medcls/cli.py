"""The `medcls` command, run from the project root (where params.yaml, models/ and metrics/ are):
classify image files with a dataset's trained model, or compare the committed predictions with
those of a git revision.

    medcls predict --dataset bus_uc scans/*.png --mask masks/*.png [--json] [--explain OUT.png]
    medcls compare main [--resamples 2000] [--seed 0]
    python -m medcls ...        (the same, without installing the package)

Exit status of predict: 0 when every image was classified, 1 when any was skipped (reported on
stderr) or the model is missing, 2 for unusable arguments. compare: 0, or 2 for an unknown revision.
Each command imports its own dependencies: `compare` runs without TensorFlow (in the pull-request
workflow, beside DVC).
"""

import argparse
import sys
from importlib.metadata import version
from pathlib import Path


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    command = argparse.ArgumentParser(prog="medcls", description="Use the pipeline's trained models.")
    command.add_argument("--version", action="version", version=f"medcls {version('medcls')}")
    commands = command.add_subparsers(dest="command", required=True)
    parser = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify images with models/<dataset>/model.keras at the threshold in "
        "metrics/<dataset>.json (with the test-time augmentation and temperature recorded there), "
        "preprocessed exactly as the pipeline does.",
    )
    parser.add_argument("--dataset", required=True, help="dataset name in params.yaml")
    parser.add_argument("images", nargs="+", help="image files, folders or globs")
    parser.add_argument(
        "--mask",
        nargs="+",
        default=[],
        help="lesion masks, one per image in the same order (files, folders or globs); "
        "join several masks of one image with ';'",
    )
    parser.add_argument(
        "--no-mask",
        action="store_true",
        help="classify whole images although the dataset crops to masks (not comparable)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--explain", type=Path, metavar="OUT.png", help="write Grad-CAM overlays of the images"
    )
    compare = commands.add_parser(
        "compare",
        help="compare the committed predictions with a git revision's (no TensorFlow needed)",
        description="Pair data/predictions/<dataset>.csv of the working tree with the same file at "
        "REVISION on the images both hold, and print a Markdown table: AUC difference with its "
        "paired bootstrap interval, sensitivity and specificity at each side's threshold, "
        "McNemar's test on the decisions.",
    )
    compare.add_argument("revision", help="git revision to compare with (branch, tag, commit)")
    compare.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return command.parse_args(argv)


def run_compare(arguments: argparse.Namespace) -> int:
    from medcls.evaluation import revisions

    try:
        table = revisions.compare_revision(
            arguments.revision, n_resamples=arguments.resamples, seed=arguments.seed
        )
    except revisions.RevisionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    return run_compare(arguments) if arguments.command == "compare" else run_predict(arguments)


def run_predict(arguments: argparse.Namespace) -> int:
    from medcls.pipeline.chatter import quiet_tensorflow

    quiet_tensorflow()
    from medcls import predict  # TensorFlow: only for this command
    from medcls.params import load as load_params
    from medcls.pipeline.errors import EXPECTED_ERRORS
    from medcls.pipeline.stage import error_lines

    try:
        predictor = predict.Predictor.for_dataset(arguments.dataset, load_params())
        warning = predict.mask_warning(
            arguments.dataset, predictor.uses_mask, bool(arguments.mask), arguments.no_mask
        )
        images = predict.expand_inputs(arguments.images)
        masks = predict.pair_masks(images, arguments.mask if predictor.uses_mask else [])
    except EXPECTED_ERRORS as error:
        print(error_lines(error), file=sys.stderr)
        return 2 if isinstance(error, predict.InputError) else 1
    if warning:
        print(warning, file=sys.stderr)

    predictions, failures, prepared = predictor.predict_files(
        images, masks, keep_inputs=bool(arguments.explain)
    )
    for failure in failures:
        print(f"skipped {failure.path}: {failure.error}", file=sys.stderr)
    if arguments.json:
        print(predict.as_json(arguments.dataset, predictor, predictions, failures))
    else:
        for line in predict.format_lines(predictions, predictor.threshold):
            print(line)
    if arguments.explain and predictions:
        import numpy as np

        from medcls.evaluation import gradcam  # matplotlib and Grad-CAM only when asked for

        titles = [
            f"{prediction.path.name}\n{prediction.class_name}, p = {prediction.probability:.3f}"
            for prediction in predictions
        ]
        decisions = np.array([prediction.label == 1 for prediction in predictions])
        gradcam.save_image_overlays(
            predictor.models, prepared, titles, predictor.threshold, arguments.explain,
            decisions=decisions,
        )
        print(f"Grad-CAM overlays written to {arguments.explain}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
