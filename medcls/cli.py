"""The `medcls` command, run from the project root (where params.yaml, models/ and metrics/ are):
classify image files with a dataset's trained model, compare the committed predictions of two
revisions, or write a pull request's review comment.

    medcls predict --dataset bus_uc scans/*.png --mask masks/*.png [--json] [--explain OUT.png]
    medcls compare main [HEAD] [--resamples 2000] [--seed 0]
    medcls review main [HEAD] --out review [--resamples 2000] [--seed 0]
    python -m medcls ...        (the same, without installing the package)

Exit status of predict: 0 when every image was classified, 1 when any was skipped (reported on
stderr) or the model is missing, 2 for unusable arguments, 130 when interrupted (Ctrl-C): the lines
printed by then (plain or --jsonl, written as each batch is scored) hold every image scored so far.
Files named as lesion masks (`<name>_mask.png`) are not classified, so a folder of BUSI's layout
can be given whole. compare and review: 0, or 2 for a revision DVC cannot name or a file that
cannot be read (one `error:` line naming it).
Each command imports its own dependencies: `compare` and `review` run without TensorFlow.
"""

import argparse
import json
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
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print machine-readable JSON once every image is scored"
    )
    output.add_argument(
        "--jsonl",
        action="store_true",
        help="print one JSON object per image as it is scored (kept if the run is interrupted)",
    )
    parser.add_argument(
        "--explain", type=Path, metavar="OUT.png", help="write Grad-CAM overlays of the images"
    )
    revisions_help = (
        "BASE: a branch, tag, commit or experiment name (`dvc exp list`); HEAD: the same, "
        "or the workspace when left out"
    )
    compare = commands.add_parser(
        "compare",
        help="pair the committed predictions of two revisions (no TensorFlow needed)",
        description="Pair data/predictions/<dataset>.csv of HEAD with the same file at BASE on "
        "the images both hold, and print a Markdown table: AUC difference with its paired "
        "bootstrap interval, sensitivity and specificity at each side's threshold, McNemar's "
        "test on the decisions; the paired AUC difference in every subgroup HEAD recorded "
        "(data/subgroups/<dataset>.csv); and every image whose decision changed. "
        + revisions_help
        + ".",
    )
    review = commands.add_parser(
        "review",
        help="write a pull request's review comment: params, metrics, paired table, ROC",
        description="Write OUT/review.md and the images it shows: the params that differ "
        "between BASE and HEAD, the headline metrics (metrics/<dataset>.json) before and after "
        "with HEAD's intervals, the tables of `medcls compare`, the largest changes of decision "
        "and HEAD's most confident errors with the Grad-CAM thumbnails HEAD has (OUT/cases/), "
        "and both sides' ROC curves on test (OUT/roc.png). " + revisions_help + ".",
    )
    review.add_argument("--out", type=Path, required=True, help="folder for review.md and images")
    for two_sides in (compare, review):
        two_sides.add_argument("base", metavar="BASE", help="revision to compare against")
        two_sides.add_argument(
            "head", metavar="HEAD", nargs="?", help="revision compared (default: the workspace)"
        )
        two_sides.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
        two_sides.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return command.parse_args(argv)


def run_comparison(arguments: argparse.Namespace) -> int:
    """`medcls compare` and `medcls review`: both read two sides through DVC."""
    from medcls.evaluation import review

    options = dict(n_resamples=arguments.resamples, seed=arguments.seed)
    try:
        base, head = review.Revision(arguments.base), review.Revision(arguments.head)
        if arguments.command == "compare":
            print(review.paired_comparison(base, head, **options), end="")
        else:
            out_md = review.write_review(base, head, arguments.out, **options)
            print(f"review written to {out_md}", file=sys.stderr)
    except review.RevisionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    return run_predict(arguments) if arguments.command == "predict" else run_comparison(arguments)


def run_predict(arguments: argparse.Namespace) -> int:
    try:
        return _predict(arguments)
    except KeyboardInterrupt:
        print(
            "error: interrupted: the images scored so far are printed above; run medcls predict "
            "again on the others",
            file=sys.stderr,
        )
        return 130


def _predict(arguments: argparse.Namespace) -> int:
    from medcls.pipeline.tensorflow_logs import filter_tensorflow_logs

    # A file name that is not valid UTF-8 (another system's encoding) is printed as its own bytes.
    sys.stdout.reconfigure(errors="surrogateescape")

    filter_tensorflow_logs()
    from medcls import predict  # TensorFlow: only for this command
    from medcls.params import load as load_params
    from medcls.pipeline.errors import EXPECTED_ERRORS
    from medcls.pipeline.stage import error_lines

    try:
        predictor = predict.Predictor.for_dataset(arguments.dataset, load_params())
        warning = predict.mask_warning(
            arguments.dataset, predictor.uses_mask, bool(arguments.mask), arguments.no_mask
        )
        images, mask_files = predict.without_mask_files(predict.expand_inputs(arguments.images))
        masks = predict.pair_masks(images, arguments.mask if predictor.uses_mask else [])
    except EXPECTED_ERRORS as error:
        print(error_lines(error), file=sys.stderr)
        return 2 if isinstance(error, predict.InputError) else 1
    if warning:
        print(warning, file=sys.stderr)
    for mask_file in mask_files:
        print(f"skipped {mask_file.path}: {mask_file.error}", file=sys.stderr)

    predictions, failures, prepared = [], [], []
    for batch in predictor.predict_batches(images, masks):
        for failure in batch.failures:
            print(f"skipped {failure.path}: {failure.error}", file=sys.stderr)
        if arguments.jsonl:
            for result in (*batch.failures, *batch.predictions):
                print(json.dumps(result.as_dict()))
        elif not arguments.json:
            for line in predict.format_lines(batch.predictions, predictor.threshold):
                print(line)
        sys.stdout.flush()
        predictions += batch.predictions
        failures += batch.failures
        if arguments.explain:
            prepared.append(batch.inputs)
    if arguments.json:
        print(predict.as_json(arguments.dataset, predictor, predictions, failures))
    if arguments.explain and predictions:
        import numpy as np

        from medcls.evaluation import gradcam  # matplotlib and Grad-CAM only when asked for

        titles = [
            f"{prediction.path.name}\n{prediction.class_name}, p = {prediction.probability:.3f}"
            for prediction in predictions
        ]
        decisions = np.array([prediction.label == 1 for prediction in predictions])
        gradcam.save_image_overlays(
            predictor.models, np.concatenate(prepared), titles, predictor.threshold,
            arguments.explain, decisions=decisions,
        )
        print(f"Grad-CAM overlays written to {arguments.explain}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
