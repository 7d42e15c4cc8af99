"""The `medcls` command: classify image files with a dataset's trained model (run from the project
root, where params.yaml, models/ and metrics/ are).

    medcls predict --dataset bus_uc scans/*.png --mask masks/*.png [--json] [--explain OUT.png]
    python -m medcls predict ...        (the same, without installing the package)

Exit status: 0 when every image was classified, 1 when any was skipped (reported on stderr) or the
model is missing, 2 for unusable arguments.
"""

import argparse
import sys
from pathlib import Path

from medcls import predict
from medcls.pipeline import config


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    command = argparse.ArgumentParser(prog="medcls", description="Use the pipeline's trained models.")
    commands = command.add_subparsers(dest="command", required=True)
    parser = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify images with models/<dataset>/model.keras at the threshold in "
        "metrics/<dataset>.json, preprocessed exactly as the pipeline does.",
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
    return command.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        predictor = predict.Predictor.for_dataset(arguments.dataset, config.load())
        warning = predict.mask_warning(
            arguments.dataset, predictor.uses_mask, bool(arguments.mask), arguments.no_mask
        )
        images = predict.expand_inputs(arguments.images)
        masks = predict.pair_masks(images, arguments.mask if predictor.uses_mask else [])
    except (predict.InputError, config.ParamsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, predict.InputError) else 1
    if warning:
        print(warning, file=sys.stderr)

    predictions, failures, prepared = predictor.predict_files(images, masks)
    for failure in failures:
        print(f"skipped {failure.path}: {failure.error}", file=sys.stderr)
    if arguments.json:
        print(predict.as_json(arguments.dataset, predictor, predictions, failures))
    else:
        for line in predict.format_lines(predictions, predictor.threshold):
            print(line)
    if arguments.explain and predictions:
        from medcls.evaluation import gradcam  # matplotlib and Grad-CAM only when asked for

        titles = [
            f"{prediction.path.name}\n{prediction.class_name}, p = {prediction.probability:.3f}"
            for prediction in predictions
        ]
        gradcam.save_image_overlays(
            predictor.model, prepared, titles, predictor.threshold, arguments.explain
        )
        print(f"Grad-CAM overlays written to {arguments.explain}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
