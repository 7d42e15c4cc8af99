"""Classify image files with a trained model, prepared exactly as the pipeline prepared its TFRecords.

Every image goes through `medcls.images.roi.prepare_file` with the dataset's `image_size` and `roi` params,
the function the roi stage used, and is scored as the evaluate stage scored it (test-time
augmentation views, temperature), so a probability here equals the evaluate stage's for the same
image and model. The decision threshold is the one the evaluate stage chose on validation; the
threshold, the views and the temperature are read from the metrics file that stage wrote.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from medcls.data.layouts import is_mask_name
from medcls.evaluation import metrics
from medcls.evaluation.calibration import apply_temperature
from medcls.evaluation.tta import mean_output
from medcls.images.decode import MASK_SEPARATOR, check_decodable_size
from medcls.images.roi import prepare_file
from medcls.model import classifier
from medcls.params import DEFAULT_MAX_IMAGE_PIXELS, Params, RoiParams
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import DatasetPaths

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
BATCH_SIZE = 64


class InputError(PipelineError, ValueError):
    """Command-line inputs that cannot be expanded or paired; the message says how to fix them."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    probability: float
    label: int
    class_name: str

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "probability": self.probability,
            "label": self.label,
            "class": self.class_name,
        }


@dataclass(frozen=True)
class Failure:
    """An input that was skipped, and why."""

    path: Path
    error: str

    def as_dict(self) -> dict:
        return {"path": str(self.path), "error": self.error}


def _is_pattern(item: str) -> bool:
    return any(character in item for character in "*?[")


def expand_inputs(items: Sequence[str]) -> list[Path]:
    """The files named, in order: a file as given (whatever its suffix, so a bad file is reported,
    not dropped), a folder's images (sorted, not recursive) or a glob's images (sorted; `**`
    recurses). A folder or glob without images is an error, as it is surely a wrong path."""
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(child for child in path.iterdir() if _is_image_file(child))
        elif _is_pattern(item) and not path.exists():
            found = sorted(Path(match) for match in glob.glob(item, recursive=True))
            found = [match for match in found if _is_image_file(match)]
        else:
            files.append(path)
            continue
        if not found:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise InputError(
                f"{item}: no image files ({suffixes}) found; folders are not searched "
                "recursively: give a glob such as 'folder/**/*.png' for subfolders"
            )
        files += found
    return files


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def without_mask_files(images: Sequence[Path]) -> tuple[list[Path], list[Failure]]:
    """The images to classify, and a Failure for each file named as a lesion mask (`<name>_mask`,
    `<name>_mask_<n>`, as BUSI stores them beside their scans): a mask is not a scan, and a folder
    of BUSI's layout holds both."""
    scans, masks = [], []
    for image in images:
        if is_mask_name(image.stem):
            masks.append(Failure(image, "named as a lesion mask (…_mask), not a scan; not classified"))
        else:
            scans.append(image)
    return scans, masks


def pair_masks(images: Sequence[Path], masks: Sequence[str]) -> list[tuple[Path, ...]]:
    """One tuple of mask files per image, pairing the expanded `masks` with `images` in order.

    An item joining files with ';' is several lesion masks of one image (the pipeline ORs them).
    Without masks every image gets an empty tuple.
    """
    if not masks:
        return [()] * len(images)
    per_image = [
        group
        for item in masks
        for group in (
            [tuple(Path(part) for part in item.split(MASK_SEPARATOR))]
            if MASK_SEPARATOR in item
            else [(path,) for path in expand_inputs([item])]
        )
    ]
    if len(per_image) != len(images):
        raise InputError(
            f"{len(images)} images but {len(per_image)} masks: --mask pairs one mask per image, "
            "in order (join several masks of one image with ';')"
        )
    return per_image


def mask_warning(dataset: str, uses_mask: bool, has_masks: bool, whole_image: bool) -> str | None:
    """Refuse a run whose probabilities would silently differ from the pipeline's; return a warning
    for the explicit whole-image fallback (`--no-mask`) or for masks the dataset does not use."""
    if has_masks and whole_image:
        raise InputError("--mask and --no-mask exclude each other")
    if uses_mask and not (has_masks or whole_image):
        raise InputError(
            f"dataset {dataset} crops images to their lesion mask (roi.use_mask: true): pass one "
            "--mask per image, in order, or --no-mask to classify whole images (the model was "
            "trained on crops, so whole-image probabilities differ from the pipeline's)"
        )
    if uses_mask and whole_image:
        return (
            f"warning: --no-mask: classifying whole images, but {dataset}'s model was trained on "
            "lesion crops; these probabilities are not comparable to the pipeline's"
        )
    if has_masks and not uses_mask:
        return f"warning: dataset {dataset} does not use masks (roi.use_mask: false); --mask is ignored"
    return None


@dataclass(frozen=True)
class Predictor:
    """A trained model (or the ensemble of the cross-validation fold models) with the
    preprocessing, class names and threshold of its dataset, the test-time augmentation `views`
    and the `temperature` (None: not calibrated) of its evaluation."""

    models: Sequence[keras.Model]
    classes: Sequence[str]
    threshold: float
    image_size: int
    roi: RoiParams
    views: Sequence[str] = ()
    temperature: float | None = None
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @classmethod
    def for_dataset(cls, name: str, params: Params) -> Predictor:
        """The model and threshold the pipeline wrote for dataset `name` (run from the project
        root): with split.folds > 1 the fold models' ensemble at the threshold chosen on their
        out-of-fold predictions."""
        dataset, paths = params.trained_dataset(name), DatasetPaths(name)
        folds = params.split.folds
        models = [paths.for_fold(fold).model for fold in range(folds)] if folds > 1 else [paths.model]
        for output in (*models, paths.evaluation):
            if not output.is_file():
                raise FileNotFoundError(
                    f"{output} not found; run `dvc repro evaluate@{name}` first (from the project root)"
                )
        document = json.loads(paths.evaluation.read_text())
        if folds > 1:
            folded = document["cross_validation"]
            threshold, temperature = folded["threshold"], folded.get("temperature")
        else:
            threshold = document["threshold"]
            temperature = document.get("calibration", {}).get("temperature")
        return cls(
            models=[classifier.load_classifier(model) for model in models],
            classes=dataset.classes,
            threshold=float(threshold),
            image_size=dataset.image_size,
            roi=dataset.roi,
            views=document.get("tta", []),
            temperature=temperature,
            max_pixels=params.max_image_pixels,
        )

    @property
    def uses_mask(self) -> bool:
        return self.roi.use_mask

    def prepare(self, image: Path, masks: tuple[Path, ...]) -> np.ndarray:
        """The (size, size, 3) uint8 model input; an image without masks is used whole. Files over
        the pixel limit are refused from their header, as the manifest refuses them."""
        for path in (image, *masks) if self.uses_mask else (image,):
            check_decodable_size(path, self.max_pixels)
        masks_given = [str(mask) for mask in masks]
        return prepare_file(Path(), str(image), masks_given, roi=self.roi, size=self.image_size)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """P(positive) for a stack of prepared uint8 images, computed as the evaluate stage does
        (an ensemble's is the mean of its models', then scaled by the temperature)."""
        probabilities = np.mean(
            [self._model_probabilities(model, images) for model in self.models], axis=0
        )
        if self.temperature is None:
            return probabilities
        return apply_temperature(probabilities, self.temperature)

    def _model_probabilities(self, model: keras.Model, images: np.ndarray) -> np.ndarray:
        views = self.views
        outputs = [
            mean_output(model, keras.ops.cast(images[start : start + BATCH_SIZE], "float32"), views)
            for start in range(0, len(images), BATCH_SIZE)
        ]
        return np.concatenate(outputs).reshape(-1).astype(float)

    def decide(self, path: Path, probability: float) -> Prediction:
        label = int(metrics.predict_positive(np.float64(probability), self.threshold))
        return Prediction(path, probability, label, self.classes[label])

    def predict_files(
        self, images: Sequence[Path], masks: Sequence[tuple[Path, ...]], *, keep_inputs: bool = True
    ) -> tuple[list[Prediction], list[Failure], np.ndarray]:
        """Predictions for the readable images, failures for the rest, and the prepared inputs of
        the predicted ones (for explanations; empty unless `keep_inputs`), each in input order."""
        predictions, failures, inputs = [], [], []
        for batch in self.predict_batches(images, masks):
            predictions += batch.predictions
            failures += batch.failures
            if keep_inputs:
                inputs.append(batch.inputs)
        return predictions, failures, np.concatenate(inputs) if inputs else self._no_inputs()

    def predict_batches(
        self, images: Sequence[Path], masks: Sequence[tuple[Path, ...]]
    ) -> Iterator[Batch]:
        """`predict_files`, BATCH_SIZE images at a time, as each batch is scored: memory does not
        grow with the number of images, and a caller that writes each batch out keeps what was
        scored when a long run is interrupted."""
        pairs = list(zip(images, masks, strict=True))
        for start in range(0, len(pairs), BATCH_SIZE):
            prepared, kept, failures = [], [], []
            for image, image_masks in pairs[start : start + BATCH_SIZE]:
                try:
                    prepared.append(self.prepare(image, image_masks))
                    kept.append(image)
                except (OSError, ValueError, cv2.error) as error:
                    failures.append(Failure(image, _one_line(error)))
            if not prepared:
                yield Batch([], failures, self._no_inputs())
                continue
            inputs = np.stack(prepared)
            predictions = [
                self.decide(path, float(probability))
                for path, probability in zip(kept, self.probabilities(inputs), strict=True)
            ]
            yield Batch(predictions, failures, inputs)

    def _no_inputs(self) -> np.ndarray:
        return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)


@dataclass(frozen=True)
class Batch:
    """One batch's predictions and failures, and the prepared inputs of the predicted images."""

    predictions: list[Prediction]
    failures: list[Failure]
    inputs: np.ndarray


def _one_line(error: BaseException) -> str:
    """OpenCV errors span several lines; a report line needs one."""
    return " ".join(str(error).split()) or type(error).__name__


def format_lines(predictions: Sequence[Prediction], threshold: float) -> Iterator[str]:
    """One tab-separated line per image: path, probability, class name, threshold."""
    for prediction in predictions:
        yield (
            f"{prediction.path}\t{prediction.probability:.6f}\t{prediction.class_name}\t"
            f"threshold {threshold:.6f}"
        )


def as_json(
    dataset: str, predictor: Predictor, predictions: Sequence[Prediction], failures: Sequence[Failure]
) -> str:
    """The machine-readable result: full-precision probabilities, the threshold and the failures."""
    return json.dumps(
        {
            "dataset": dataset,
            "threshold": predictor.threshold,
            "classes": list(predictor.classes),
            "predictions": [prediction.as_dict() for prediction in predictions],
            "failures": [failure.as_dict() for failure in failures],
        },
        indent=2,
    )
