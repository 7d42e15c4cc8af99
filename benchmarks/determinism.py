"""The cost of deterministic training (`train.deterministic: true`, the default): images/s of
the train stage's fit steps, augmented input pipeline included, with and without TensorFlow's
op determinism.

    python -m benchmarks.determinism [--steps 8] [--repeats 3]

Model: the offline profile's `busi` entry (ImageNet EfficientNet-Lite0 from ../shared, the lighter
PDF/SE head, 224 px, batch 16, flips/brightness/contrast), in phase 1 (backbone frozen, streamed:
`cache_features: false`) and phase 2 (top 30 % unfrozen), on random pixels. Without determinism
first: TensorFlow cannot switch op determinism off again within a process. Skips without ../shared.
"""

from __future__ import annotations

import argparse
import statistics

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import SEED, machine, print_table, skip_unless_shared, stopwatch
from benchmarks.real_data import resolved_profile
from medcls.model import classifier, losses
from medcls.training import augment, determinism, inputs

IMAGES = 64
PHASES = {"frozen (phase 1, streamed)": 0.0, "fine-tune (phase 2, top 30 %)": 0.3}


def training_batches(dataset: dict) -> tf.data.Dataset:
    """The train stage's input pipeline (cached, shuffled, augmented) over random pixels."""
    rng = np.random.default_rng(SEED)
    size = dataset["image_size"]
    examples = {
        "image": rng.integers(0, 256, (IMAGES, size, size, 3), dtype=np.uint8),
        "label": np.arange(IMAGES, dtype=np.int64) % 2,
    }
    return inputs.make_batches(
        tf.data.Dataset.from_tensor_slices(examples),
        batch_size=dataset["train"]["batch_size"],
        augmenter=augment.build_augmenter(dataset["augment"], SEED),
        shuffle=True,
        seed=SEED,
        cache=True,
    ).repeat()


def images_per_second(dataset: dict, unfreeze: float, *, steps: int, repeats: int) -> float:
    """Median images/s of `steps` fit steps over `repeats` timings, after an untimed warm-up."""
    keras.backend.clear_session()
    model = classifier.build_classifier(
        dataset["backbone"], dataset["head"], dataset["image_size"], seed=SEED
    )
    if unfreeze:
        classifier.unfreeze_top(model, fraction=unfreeze)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=losses.make_loss(dataset["loss"]),
        jit_compile=False,
    )
    batches = training_batches(dataset)
    model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)
    rates = []
    for _ in range(repeats):
        with stopwatch() as elapsed:
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        rates.append(dataset["train"]["batch_size"] * steps / elapsed())
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="fit steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting (median)")
    arguments = parser.parse_args()
    skip_unless_shared("weights")
    dataset = resolved_profile(["busi"])["datasets"]["busi"]
    print(machine())
    rates = {}
    for deterministic in (False, True):
        determinism.configure_determinism(deterministic, SEED)
        for phase, unfreeze in PHASES.items():
            rates[phase, deterministic] = images_per_second(
                dataset, unfreeze, steps=arguments.steps, repeats=arguments.repeats
            )
    print_table(
        ["busi model, 224 px, batch 16", "images/s, op determinism off", "on (default)", "on / off"],
        [
            [phase, rates[phase, False], rates[phase, True], rates[phase, True] / rates[phase, False]]
            for phase in PHASES
        ],
    )


if __name__ == "__main__":
    main()
