"""Frozen-phase feature caching: phase-1 epoch time and validation AUC, streamed against cached.

Streamed (`cache_features: false`, the default): every epoch augments every image and runs the
frozen backbone on it. Cached (`cache_features: true`): the backbone runs once over the unaugmented
images and every epoch trains only the head on the stored features. Target: epochs >= 5x faster,
the same validation AUC within noise (95 % bootstrap intervals shown).

    python -m benchmarks.frozen_phase [--images 0] [--epochs 5]

Model and data: the offline profile's `busi` entry (ImageNet EfficientNet-Lite0 from ../shared, the
lighter PDF/SE head) on ../shared's BUSI, through the train stage's own code. Skips without ../shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras

from benchmarks.common import (
    PROJECT,
    SEED,
    machine,
    print_table,
    skip_unless_shared,
    stopwatch,
)
from benchmarks.data import BUSI_CLASSES, split_rows, write_records
from medcls.evaluation import metrics
from medcls.images import tfrecord_reader
from medcls.model import classifier, losses
from medcls.params import DatasetParams, Params, load
from medcls.pipeline import stage
from medcls.training import augment, fit, inputs

PROFILE = PROJECT / "profiles" / "offline-shared.yaml"
BOOTSTRAP = 1000


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch (training and validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def run_phase(
    records: Path,
    params: Params,
    dataset: DatasetParams,
    *,
    cache: bool,
    epochs: int,
) -> dict:
    """Phase 1 as the train stage runs it, with `cache_features` = `cache`; its timings and AUC."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    fit.configure_precision(dataset.train.mixed_precision)

    def batches(split: str, **options):
        return inputs.make_batches(
            tfrecord_reader.read_split(records, split),
            batch_size=dataset.train.batch_size,
            cache=True,
            **options,
        )

    augmenter = augment.build_augmenter(dataset.augment, SEED)
    labels = tfrecord_reader.read_labels(records, "train")
    model = classifier.build_classifier(
        dataset.backbone, dataset.head, dataset.image_size, seed=SEED
    )
    timer = EpochTimer()
    with stopwatch() as elapsed:
        fit.train(
            model,
            [fit.Phase("frozen", epochs, params.lr, epochs, cache_features=cache)],
            fit.Batches(
                train=batches("train", augmenter=augmenter, shuffle=True, seed=SEED),
                val=batches("val"),
                plain_train=batches("train", shuffle=True, seed=SEED) if cache else None,
            ),
            fit.FitSettings(
                loss=losses.make_loss(dataset.loss),
                class_weight=losses.class_weights(labels, dataset.class_weight),
                jit_compile=dataset.train.jit_compile,
                callbacks=[timer],
            ),
        )
    y_true = tfrecord_reader.read_labels(records, "val")
    y_prob = model.predict(batches("val"), verbose=0)[:, 0]
    interval = metrics.bootstrap_ci(y_true, y_prob, 0.5, n_resamples=BOOTSTRAP, seed=SEED)
    return {
        "first epoch s": timer.seconds[0],
        "later epochs s (median)": statistics.median(timer.seconds[1:]),
        "phase s": elapsed(),
        "outside epochs s (feature pass)": elapsed() - sum(timer.seconds),
        "val AUC": metrics.roc_auc(y_true, y_prob),
        "95 % CI": "[{:.3f}, {:.3f}]".format(*interval["auc_ci95"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=0, help="BUSI images to use (0: all)")
    parser.add_argument("--epochs", type=int, default=5, help="phase-1 epochs (at least 2)")
    args = parser.parse_args()
    raw_dir = skip_unless_shared("data", "busi")
    weights = skip_unless_shared("weights", "efficientnet_lite0_imagenet_notop.keras")
    print(f"machine: {machine()}")
    params = load(PROFILE)
    busi = params.datasets["busi"]
    backbone = busi.backbone.model_copy(update={"path": str(weights)})
    dataset = busi.model_copy(update={"backbone": backbone})
    rows = split_rows(raw_dir, "busi", BUSI_CLASSES, args.images)
    print(f"{len(rows)} images: {rows['split'].value_counts().to_dict()}; {args.epochs} epochs")
    with tempfile.TemporaryDirectory() as scratch:
        records = write_records(
            rows, raw_dir, Path(scratch) / "busi", dataset, stage.workers(params)
        )
        results = {
            mode: run_phase(records, params, dataset, cache=cache, epochs=args.epochs)
            for mode, cache in (("streamed", False), ("cached", True))
        }
    rows = [[mode, *result.values()] for mode, result in results.items()]
    print_table(["phase 1", *results["streamed"]], rows)
    streamed, cached = results["streamed"], results["cached"]
    epoch = "later epochs s (median)"
    print(
        f"epoch speed-up: {streamed[epoch] / cached[epoch]:.1f}x (target >= 5x); "
        f"whole phase: {streamed['phase s'] / cached['phase s']:.1f}x; "
        f"val AUC, cached - streamed: {cached['val AUC'] - streamed['val AUC']:+.3f}"
    )


if __name__ == "__main__":
    main()
