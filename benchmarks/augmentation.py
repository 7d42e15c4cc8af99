"""What each training augmentation costs: images/s of `tf.data` batches through it, per default model.

For each default model, at its image size and batch size: each augmentation switched on alone, all
of the model's augmentations together (its train-stage augmenter), and the Keras layers the
project's own layers replace, drawn from the same ranges (geometry: RandomRotation,
RandomTranslation, RandomShear and RandomZoom, each resampling the batch; saturation:
RandomSaturation's HSV round trip). For a model that crops to lesion masks, also the ultrasound
augmentations and the ROI margin crop, which the defaults leave off, each alone at the values below.
Random pixels; nothing is read from disk.

    python -m benchmarks.augmentation [--batches 20] [--epochs 3]
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import SEED, default_models, machine, print_table, stopwatch
from medcls.params import AugmentParams, RoiParams
from medcls.training import augment

ULTRASOUND_EXAMPLES = {"speckle": 0.2, "gamma": [0.8, 1.25], "blur": 1.0, "downscale": 0.5}
MARGIN_JITTER_EXAMPLE = 0.05


def keras_equivalents(spec: AugmentParams) -> dict[str, keras.Sequential]:
    """Label -> the stock Keras layers for the model's geometry and saturation, where it uses them."""
    common = {"seed": SEED, "fill_mode": augment.FILL_MODE}
    geometry = {
        "rotation": lambda degrees: keras.layers.RandomRotation(degrees / 360, **common),
        "shift": lambda part: keras.layers.RandomTranslation(part, part, **common),
        "shear": lambda part: keras.layers.RandomShear(part, part, **common),
        "zoom": lambda part: keras.layers.RandomZoom(part, part, **common),
    }
    chain = [make(getattr(spec, key)) for key, make in geometry.items() if getattr(spec, key)]
    equivalents = {"Keras layers: geometry chained": keras.Sequential(chain)} if chain else {}
    if spec.saturation:
        change = spec.saturation  # RandomSaturation's f scales saturation by f / (1 - f)
        factor = ((1 - change) / (2 - change), (1 + change) / (2 + change))
        saturation = keras.layers.RandomSaturation(
            factor, value_range=augment.VALUE_RANGE, seed=SEED
        )
        equivalents["Keras layer: saturation"] = keras.Sequential([saturation])
    return equivalents


def ultrasound_augmenters(roi: RoiParams) -> dict[str, keras.Sequential]:
    """Label -> each ultrasound augmentation alone, and the margin crop of ROI jitter, at the
    example values."""
    augmenters = {
        f"{key} {value} alone": augment.build_augmenter(AugmentParams(**{key: value}), SEED)
        for key, value in ULTRASOUND_EXAMPLES.items()
    }
    jittered = roi.model_copy(update={"margin_jitter": MARGIN_JITTER_EXAMPLE})
    label = f"roi.margin_jitter {MARGIN_JITTER_EXAMPLE} alone"
    augmenters[label] = augment.build_augmenter(AugmentParams(), SEED, roi=jittered)
    return augmenters


def rate(augmenter: keras.Layer, pixels: np.ndarray, batch_size: int, epochs: int) -> float:
    """Images/s of uint8 batches cast to float32 and augmented in a parallel `tf.data` map."""
    batches = (
        tf.data.Dataset.from_tensor_slices(pixels)
        .batch(batch_size)
        .map(
            lambda images: augmenter(tf.cast(images, tf.float32), training=True),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
    for _ in batches:  # traces the map
        pass
    with stopwatch() as elapsed:
        for _ in range(epochs):
            for _ in batches:
                pass
    return epochs * len(pixels) / elapsed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    table = []
    for name, dataset in default_models().items():
        spec, size, batch_size = dataset.augment, dataset.image_size, dataset.train.batch_size
        pixels = np.random.default_rng(SEED).integers(
            0, 256, (args.batches * batch_size, size, size, 3), dtype=np.uint8
        )
        augmenters = {
            f"{key} alone": augment.build_augmenter(AugmentParams(**{key: value}), SEED)
            for key, value in spec.model_dump().items()
            if value
        }
        augmenters["all (the train stage's augmenter)"] = augment.build_augmenter(spec, SEED)
        if dataset.roi.use_mask:
            augmenters |= ultrasound_augmenters(dataset.roi)
        augmenters |= keras_equivalents(spec)
        for label, augmenter in augmenters.items():
            images_per_second = rate(augmenter, pixels, batch_size, args.epochs)
            table.append([name, size, label, images_per_second])
    print_table(["model", "px", "augmentation", "images/s"], table)


if __name__ == "__main__":
    main()
