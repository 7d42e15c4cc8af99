"""Phased transfer learning: train the head on a frozen backbone, then fine-tune its top layers."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from medcls.model.classifier import split_at_backbone, unfreeze_top
from medcls.params import TrainParams
from medcls.training import distribute
from medcls.training.resume import TrainingBackup


@dataclass(frozen=True)
class Phase:
    """One training phase; a phase that unfreezes gives exactly one of the two unfreeze options.

    `cache_features`: train the head on backbone features computed once, without augmentation
    (only for a phase that keeps the backbone frozen, whose features never change).
    """

    name: str
    epochs: int
    learning_rate: float
    patience: int
    unfreeze_fraction: float | None = None
    unfreeze_layers: int | None = None
    cache_features: bool = False

    def __post_init__(self) -> None:
        if self.cache_features and self.unfreezes:
            raise ValueError(
                f"phase {self.name}: cache_features needs a frozen backbone, but this phase "
                "unfreezes part of it"
            )

    @property
    def unfreezes(self) -> bool:
        return self.unfreeze_fraction is not None or self.unfreeze_layers is not None


def planned_phases(schedule: TrainParams, lr: float, fine_tune_lr: float) -> list[Phase]:
    """Phase 1 trains the head at `lr`; phase 2 unfreezes the top of the backbone at `fine_tune_lr`."""
    fine_tune = schedule.fine_tune
    unfreeze = fine_tune.model_dump(include={"unfreeze_fraction", "unfreeze_layers"})
    return [
        Phase(
            "frozen",
            schedule.epochs,
            lr,
            schedule.patience,
            cache_features=schedule.cache_features,
        ),
        Phase(
            "fine_tune",
            fine_tune.epochs,
            fine_tune_lr,
            fine_tune.patience,
            **unfreeze,  # the one of unfreeze_fraction and unfreeze_layers that the params give
        ),
    ]


@dataclass(frozen=True)
class Batches:
    """The batches a model trains on: `train` (augmented, shuffled), `val`, and `plain_train`, the
    training batches without augmentation, which a phase that caches backbone features needs: it
    runs the frozen backbone over them once (augmented images would differ every epoch)."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    plain_train: tf.data.Dataset | None = None


@dataclass(frozen=True)
class FitSettings:
    """What every phase compiles and fits with. Backbone features beyond `feature_budget` bytes go
    to files in `feature_dir` (see `cached_features`)."""

    loss: keras.losses.Loss
    class_weight: dict[int, float] | None
    jit_compile: bool | str = "auto"
    callbacks: Sequence[keras.callbacks.Callback] = ()
    feature_budget: float = math.inf
    feature_dir: Path | None = None


def train(
    model: keras.Model,
    phases: Sequence[Phase],
    batches: Batches,
    settings: FitSettings,
    backup: TrainingBackup | None = None,
) -> dict[str, dict]:
    """Run the phases in order (skipping those with 0 epochs); return a summary per phase name.

    Summaries are keyed by name, not listed, so `dvc metrics diff` can show them (it skips lists).

    Each phase recompiles with a fresh Adam at its own learning rate (recompiling is also what makes
    a change of `trainable` take effect), stops early on validation AUC and keeps its best weights.
    The model ends with the weights of the phase with the best validation AUC (an earlier phase on a
    tie), so fine-tuning that does not beat the frozen phase on validation is discarded; summaries
    say which phase was `selected`. Epoch numbers continue across phases so the logged curves are
    one continuous history.

    A phase with `cache_features` runs the frozen backbone once over `batches.plain_train` and
    the validation batches, then fits only the head, which shares its layers with `model`, on those
    features: the backbone's forward pass, most of an epoch's time, is not repeated every epoch.

    With a `backup`, every epoch is backed up and a run started again after an interruption
    skips the phases that finished and resumes the one in progress after its last finished epoch.
    """
    if batches.plain_train is None and any(phase.cache_features for phase in phases):
        raise ValueError("cache_features needs the batches without augmentation: plain_train")
    summaries, epoch = {}, 0
    best_auc, best_phase, best_weights = -math.inf, None, None
    for phase in phases:
        if phase.epochs == 0:
            continue
        if phase.unfreezes:
            unfreeze_top(model, fraction=phase.unfreeze_fraction, layers=phase.unfreeze_layers)
        if backup:
            backup.agree_with_workers(phase.name, model.distribute_strategy)
        finished = backup.finished_phase(model, phase.name) if backup else None
        summaries[phase.name] = finished or _fit_phase(
            model, phase, epoch, batches, settings, backup
        )
        epoch += summaries[phase.name]["epochs_run"]
        phase_auc = summaries[phase.name]["early_stopping_val_auc"]
        if phase_auc is not None and phase_auc > best_auc:
            best_auc, best_phase, best_weights = phase_auc, phase.name, model.get_weights()
    if best_phase is not None and best_phase != list(summaries)[-1]:
        model.set_weights(best_weights)
    for name, summary in summaries.items():
        summary["selected"] = name == best_phase
    return summaries


def _fit_phase(
    model: keras.Model,
    phase: Phase,
    epoch: int,
    batches: Batches,
    settings: FitSettings,
    backup: TrainingBackup | None,
) -> dict:
    """Train one phase from epoch `epoch` (or from its backup); return its summary."""
    fitted, train_data, val_data = (
        _on_cached_features(model, batches, settings)
        if phase.cache_features
        else (model, batches.train, batches.val)
    )
    fitted.compile(
        optimizer=keras.optimizers.Adam(phase.learning_rate),
        loss=settings.loss,
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        jit_compile=settings.jit_compile,
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=phase.patience, restore_best_weights=True
    )
    resumed = backup.restore_epoch(fitted, phase.name) if backup else None
    backing_up = [backup.epoch_callback(phase.name, early_stopping)] if backup else []
    fitting = dict(
        validation_data=val_data,
        initial_epoch=epoch if resumed is None else resumed,
        epochs=epoch + phase.epochs,
        class_weight=settings.class_weight,
        callbacks=[early_stopping, *settings.callbacks, *backing_up],
    )
    if distribute.on_several_workers(fitted.distribute_strategy):
        history = distribute.fit_on_workers(fitted, train_data, **fitting)
    else:  # the dataset shuffles itself (see inputs.make_batches)
        history = fitted.fit(train_data, shuffle=False, verbose=2, **fitting)
    best = early_stopping.best  # None or NaN if val AUC was never a number
    phase_auc = math.nan if best is None else float(best)
    summary = {
        "learning_rate": _learning_rate_used(fitted),
        "epochs_run": (history.epoch[-1] + 1 if history.epoch else resumed) - epoch,
        "trainable_weights": len(model.trainable_weights),
        "trainable_params": sum(math.prod(weight.shape) for weight in model.trainable_weights),
        "cached_features": phase.cache_features,
        "early_stopping_val_auc": phase_auc if math.isfinite(phase_auc) else None,
    }
    if backup:
        backup.record_phase(model, phase.name, summary)
    return summary


def _on_cached_features(
    model: keras.Model, batches: Batches, settings: FitSettings
) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
    """The classifier's head and the backbone features of the plain train and the val batches."""
    extractor, head = split_at_backbone(model)
    folder = settings.feature_dir
    spill = {split: folder / f"{split}.features" if folder else None for split in ("train", "val")}
    budget = settings.feature_budget
    train_features = cached_features(
        extractor, batches.plain_train, shuffle=True, budget=budget, spill_to=spill["train"]
    )
    val_features = cached_features(
        extractor, batches.val, shuffle=False, budget=budget, spill_to=spill["val"]
    )
    return head, train_features, val_features


def cached_features(
    extractor: keras.Model,
    batches: tf.data.Dataset,
    *,
    shuffle: bool,
    budget: float = math.inf,
    spill_to: Path | None = None,
) -> tf.data.Dataset:
    """One pass of `extractor` over (images, labels) batches, kept as (features, labels) batches of
    the same size, reshuffled every epoch when `shuffle`.

    The features stay in RAM while they fit `budget` bytes, else are written to the file `spill_to`
    and read back from it by batch (the page cache keeps what fits): the same batches either way.
    The extractor is called directly rather than through `predict`, which under a distribution
    strategy would hand every replica the whole batch and return each output once per replica.
    """
    extract = tf.function(lambda images: extractor(images, training=False), reduce_retracing=True)
    store, labels = None, []
    for images, batch_labels in batches:
        batch_features = keras.ops.convert_to_numpy(extract(images))
        if store is None:
            on_disk = spill_to is not None and batch_features.nbytes * len(batches) > budget
            store = _FeatureFile(spill_to) if on_disk else _FeatureList()
            batch_size = len(batch_features)
        store.append(batch_features)
        labels.append(keras.ops.convert_to_numpy(batch_labels))
    features, labels = store.array(), np.concatenate(labels)

    def gather(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return features[indices], labels[indices]

    order = tf.data.Dataset.range(len(labels))
    if shuffle:
        order = order.shuffle(len(labels), reshuffle_each_iteration=True)
    dtypes = (tf.as_dtype(features.dtype), tf.as_dtype(labels.dtype))
    shapes = ((None, *features.shape[1:]), (None, *labels.shape[1:]))
    pairs = order.batch(batch_size).map(
        lambda indices: tuple(
            tf.ensure_shape(tensor, shape)
            for tensor, shape in zip(tf.numpy_function(gather, [indices], dtypes), shapes, strict=True)
        )
    )
    return pairs.prefetch(tf.data.AUTOTUNE)


class _FeatureList:
    """Feature batches in RAM."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def append(self, batch: np.ndarray) -> None:
        self.batches.append(batch)

    def array(self) -> np.ndarray:
        return np.concatenate(self.batches)


class _FeatureFile:
    """Feature batches appended to a file, read back as a read-only memory map."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.stream, self.rows, self.row = path, path.open("wb"), 0, None

    def append(self, batch: np.ndarray) -> None:
        self.stream.write(np.ascontiguousarray(batch).tobytes())
        self.rows += len(batch)
        self.row = (batch.dtype, batch.shape[1:])

    def array(self) -> np.ndarray:
        self.stream.close()
        dtype, shape = self.row
        print(f"features of {self.rows} images on disk: {self.path}")
        return np.memmap(self.path, dtype=dtype, mode="r", shape=(self.rows, *shape))


def _learning_rate_used(model: keras.Model) -> float:
    """The optimizer's own learning rate (the value training really used, not the param), written at
    float32 precision so that 1e-5 reads 1e-05 and not 9.999999747378752e-06."""
    return float(str(np.float32(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))


def configure_precision(mode: str) -> str:
    """Set Keras' global dtype policy and return its name; "auto" picks mixed_float16 when a GPU is
    visible (its tensor cores make it ~2x faster) and float32 on a CPU (where float16 is slower)."""
    if mode == "auto":
        mode = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(mode)
    return mode
