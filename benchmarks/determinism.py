"""The cost of deterministic training (`train.deterministic: true`, the default): images/s of
the train stage's fit steps, augmented input pipeline included, with and without TensorFlow's
op determinism.

    python -m benchmarks.determinism [--steps 8] [--rounds 3]

Model: the offline profile's `busi` entry (ImageNet EfficientNet-Lite0 from ../shared, the lighter
PDF/SE head, 224 px, batch 16, flips/brightness/contrast), in phase 1 (backbone frozen, streamed:
`cache_features: false`) and phase 2 (top 30 % unfrozen), on random pixels. TensorFlow cannot
switch op determinism off within a process, so each timing runs in its own process, off and on
alternating (the machine's load drifts); the table gives the median of the rounds. Skips without
../shared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import SEED, machine, print_table, skip_unless_shared, stopwatch
from benchmarks.real_data import resolved_profile
from medcls.model import classifier, losses
from medcls.params import DatasetParams, validate
from medcls.training import augment, determinism, inputs

IMAGES = 64
PHASES = {"frozen (phase 1, streamed)": 0.0, "fine-tune (phase 2, top 30 %)": 0.3}


def training_batches(dataset: DatasetParams) -> tf.data.Dataset:
    """The train stage's input pipeline (cached, shuffled, augmented) over random pixels."""
    rng = np.random.default_rng(SEED)
    size = dataset.image_size
    examples = {
        "image": rng.integers(0, 256, (IMAGES, size, size, 3), dtype=np.uint8),
        "label": np.arange(IMAGES, dtype=np.int64) % 2,
    }
    return inputs.make_batches(
        tf.data.Dataset.from_tensor_slices(examples),
        batch_size=dataset.train.batch_size,
        augmenter=augment.build_augmenter(dataset.augment, SEED),
        shuffle=True,
        seed=SEED,
        cache=True,
    ).repeat()


def images_per_second(dataset: DatasetParams, unfreeze: float, *, steps: int) -> float:
    """Images/s of `steps` fit steps, after an untimed warm-up (tracing)."""
    keras.backend.clear_session()
    model = classifier.build_classifier(
        dataset.backbone, dataset.head, dataset.image_size, seed=SEED
    )
    if unfreeze:
        classifier.unfreeze_top(model, fraction=unfreeze)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=losses.make_loss(dataset.loss),
        jit_compile=False,
    )
    batches = training_batches(dataset)
    model.fit(batches, steps_per_epoch=2, epochs=1, shuffle=False, verbose=0)
    with stopwatch() as elapsed:
        model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return dataset.train.batch_size * steps / elapsed()


def timed_in_a_process(phase: str, deterministic: bool, steps: int) -> float:
    command = [sys.executable, "-m", __spec__.name, "--steps", str(steps), "--one", phase]
    command += ["--deterministic"] if deterministic else []
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed fit steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="timings per setting (median)")
    parser.add_argument("--one", choices=PHASES, help=argparse.SUPPRESS)  # a child: one timing
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    skip_unless_shared("weights")
    if arguments.one:
        dataset = validate(resolved_profile(["busi"])).dataset("busi")
        determinism.configure_determinism(arguments.deterministic, SEED)
        print(images_per_second(dataset, PHASES[arguments.one], steps=arguments.steps))
        return
    print(machine())
    rates = {(phase, on): [] for phase in PHASES for on in (False, True)}
    for _ in range(arguments.rounds):
        for phase in PHASES:
            for on in (False, True):
                rates[phase, on].append(timed_in_a_process(phase, on, arguments.steps))
    median = {key: statistics.median(values) for key, values in rates.items()}
    print_table(
        ["busi model, 224 px, batch 16", "images/s, op determinism off", "on (default)", "on / off"],
        [[phase, median[phase, False], median[phase, True], median[phase, True] / median[phase, False]]
         for phase in PHASES],
    )
    print(machine())


if __name__ == "__main__":
    main()
