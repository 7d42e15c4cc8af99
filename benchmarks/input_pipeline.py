"""Is the input ever the bottleneck? Images/s the training input delivers, against what consumes it.

The training input is the train stage's own: `tfrecord_reader.read_split` + `inputs.make_batches` with the
dataset's augmenter (PNG decode, augmentation, batching, prefetch). It is compared with
(a) each default model's frozen-phase train step on random data, at the pipeline's own precision
and XLA settings (target: input >= 5x faster), and
(b) the reference notebook's loader, which every epoch reads each PNG and its mask with OpenCV,
resizes both and multiplies the image by the mask (target: >= 3x faster).

    python -m benchmarks.input_pipeline [--images 256] [--epochs 3] [--model-steps 3]

Images: ../shared's BUSI (a seeded sample), or generated BUSI-like images without ../shared. Each
model's input is measured at its image size, ROI params, augmentation and batch size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd

from benchmarks.common import (
    SEED,
    build_model,
    default_models,
    machine,
    print_table,
    project_params,
    stopwatch,
    train_step_rate,
)
from benchmarks.data import BUSI_CLASSES, busi_source, split_rows, write_records
from medcls.images import tfrecord_reader
from medcls.images.decode import mask_paths_of
from medcls.params import DatasetParams
from medcls.pipeline import stage
from medcls.training import fit, inputs

READERS = {  # label -> (augment, cache)
    "TFRecords, augmented, decoded every epoch": (True, False),
    "TFRecords, augmented, decoded once (train stage)": (True, True),
    "TFRecords, not augmented, decoded every epoch": (False, False),
    "TFRecords, not augmented, decoded once": (False, True),
}


def reader_rate(
    tfrecord_dir: Path, dataset: DatasetParams, *, epochs: int, augment: bool, cache: bool
) -> float:
    """Images/s of the train stage's input over `epochs` epochs, after one untimed epoch (which
    traces the augmenter and, with `cache`, fills the cache as the train stage's first epoch does)."""
    batches = inputs.make_batches(
        tfrecord_reader.read_split(tfrecord_dir, "train"),
        batch_size=dataset.train.batch_size,
        augmenter=augment.build_augmenter(dataset.augment, SEED) if augment else None,
        shuffle=True,
        seed=SEED,
        cache=cache,
    )
    _count(batches)
    with stopwatch() as elapsed:
        images = sum(_count(batches) for _ in range(epochs))
    return images / elapsed()


def _count(batches) -> int:
    return sum(int(labels.shape[0]) for _, labels in batches)


def notebook_rate(raw_dir: Path, rows: pd.DataFrame, size: int, *, epochs: int) -> float:
    """Images/s of the reference notebook's loader, which redoes all of its work every epoch."""
    with stopwatch() as elapsed:
        for _ in range(epochs):
            for path, masks in zip(rows["path"], rows["mask_paths"], strict=True):
                _notebook_image(raw_dir, path, mask_paths_of(masks), size)
    return epochs * len(rows) / elapsed()


def _notebook_image(raw_dir: Path, path: str, mask_paths: tuple[str, ...], size: int):
    image = cv2.resize(cv2.imread(str(raw_dir / path)), (size, size))
    mask = cv2.resize(cv2.imread(str(raw_dir / mask_paths[0]), cv2.IMREAD_GRAYSCALE), (size, size))
    return image.astype(np.float32) * (mask[..., None] / 255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256, help="BUSI images to use (0: all)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each loader")
    parser.add_argument("--model-steps", type=int, default=3, help="timed train steps per model")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    params = project_params()
    with tempfile.TemporaryDirectory() as scratch:
        raw_dir = busi_source(Path(scratch), args.images)
        rows = split_rows(raw_dir, "busi", BUSI_CLASSES, args.images)
        train_rows = rows[rows["split"] == "train"]
        print(f"{len(rows)} images, {len(train_rows)} in the train split")
        table = []
        for name, dataset in default_models(params).items():
            records = write_records(
                rows, raw_dir, Path(scratch) / name, dataset, stage.workers(params)
            )
            size = dataset.image_size
            rates = {
                label: reader_rate(records, dataset, epochs=args.epochs, augment=aug, cache=cache)
                for label, (aug, cache) in READERS.items()
            }
            notebook = notebook_rate(raw_dir, train_rows, size, epochs=args.epochs)
            model = _model_rate(dataset, args.model_steps)
            rates = {"(a) model train step": model, "(b) notebook loader": notebook, **rates}
            table += [
                [name, size, label, rate, rate / model, rate / notebook]
                for label, rate in rates.items()
            ]
    print_table(
        ["model", "px", "what", "images/s", "x (a), target >= 5", "x (b), target >= 3"], table
    )


def _model_rate(dataset: DatasetParams, steps: int) -> float:
    """The frozen-phase train step's images/s with the pipeline's own precision and XLA choice."""
    keras.backend.clear_session()
    policy = fit.configure_precision(dataset.train.mixed_precision)
    rate = train_step_rate(
        build_model(dataset),
        dataset,
        batch_size=dataset.train.batch_size,
        steps=steps,
        jit_compile=dataset.train.jit_compile,
    )
    print(f"model step measured with {policy}, jit_compile={dataset.train.jit_compile}")
    return rate


if __name__ == "__main__":
    main()
