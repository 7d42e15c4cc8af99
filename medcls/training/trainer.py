"""Training one model: the train stage's work as one object, set up from a small frozen config.

`TrainingConfig.of(params, dataset)` is everything a run depends on (seed, phases, batches,
precision, model); `Trainer(config)` runs it: it chooses the distribution strategy, sets
determinism and precision, builds the batches from the records (the plain ones too when a phase
caches features), the model and the loss, and trains with every epoch backed up and logged as
learning curves.

    with Trainer(config).train(records, folders) as trained:
        ...  # write trained.model and trained.metrics; the backup goes once this block completes

A change to how a model trains goes into one of the modules the trainer calls: `fit` (phases,
early stopping, feature caching), `inputs` and `records` (batches), `augment`, `resume` (backup),
`curves` (DVCLive), `distribute` (strategies).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import keras
import tensorflow as tf

from medcls.model import classifier, losses
from medcls.params import (
    AugmentParams,
    Backbone,
    DatasetParams,
    HeadParams,
    Loss,
    Params,
    RoiParams,
    TrainParams,
)
from medcls.training import augment, curves, determinism, distribute, fit, inputs, resume
from medcls.training.fit import Phase
from medcls.training.records import TrainingRecords


@dataclass(frozen=True)
class TrainingConfig:
    """What one training run is made of; `of` reads it from the typed params."""

    seed: int
    phases: tuple[Phase, ...]
    batch_size: int  # per replica
    image_size: int
    deterministic: bool
    mixed_precision: str
    jit_compile: bool | str
    memory_fraction: float
    backbone: Backbone
    head: HeadParams
    loss: Loss
    class_weight: str
    augment: AugmentParams
    roi: RoiParams
    params_fingerprint: dict  # the params a backup must have been made with to be resumed

    @property
    def caches_features(self) -> bool:
        return any(phase.cache_features for phase in self.phases)

    @classmethod
    def of(cls, params: Params, dataset: DatasetParams) -> TrainingConfig:
        """The config of `dataset`'s training: its fields of the same name in the dataset's params
        and their `train` section."""
        schedule = dataset.train
        same_names = {
            name: getattr(schedule if name in TrainParams.model_fields else dataset, name)
            for name in (field.name for field in fields(cls))
            if name in TrainParams.model_fields or name in DatasetParams.model_fields
        }
        return cls(
            seed=params.seed,
            phases=tuple(fit.planned_phases(schedule, params.lr, params.fine_tune_lr)),
            params_fingerprint=resume.params_fingerprint(params, dataset),
            **same_names,
        )


@dataclass(frozen=True)
class TrainingFolders:
    """Where a run keeps its state: the backup it resumes from, the backbone features that do not
    fit in memory, the DVCLive curves."""

    backup: Path
    features: Path
    curves: Path


@dataclass(frozen=True)
class TrainedModel:
    """A finished run: the model with its selected weights, its metrics and the DVCLive folder of
    its learning curves."""

    model: keras.Model
    metrics: dict
    curves: Path


class Trainer:
    """Trains the model of a `TrainingConfig` under the distribution strategy this machine (or
    cluster) calls for. Create it before any other TensorFlow work: a multi-worker strategy must
    exist before TensorFlow initialises its runtime."""

    def __init__(self, config: TrainingConfig) -> None:
        self.config, self.strategy = config, distribute.choose_strategy()

    @contextmanager
    def train(self, records: TrainingRecords, folders: TrainingFolders) -> Iterator[TrainedModel]:
        """Train on `records`; the backup in `folders.backup` is removed only once the caller's
        block completes, so a run killed before its outputs are written resumes."""
        config, started = self.config, time.perf_counter()
        determinism.configure_determinism(config.deterministic, config.seed)
        policy = fit.configure_precision(config.mixed_precision)
        budget = inputs.memory_budget(config.memory_fraction)
        labels = records.training_labels()
        batches = self._batches(records, budget).of_phases(caching=config.caches_features)
        backup = resume.TrainingBackup(
            folders.backup,
            resume.inputs_fingerprint(config.params_fingerprint, records.tfrecord_dir),
        )
        with self.strategy.scope(), curves.resumable_live(folders.curves, backup) as live:
            model = classifier.build_classifier(
                config.backbone, config.head, config.image_size, seed=config.seed
            )
            settings = fit.FitSettings(
                loss=losses.make_loss(config.loss),
                class_weight=losses.class_weights(labels, config.class_weight),
                jit_compile=config.jit_compile,
                callbacks=[curves.EpochCurves(live, backup)],
                feature_budget=budget,
                feature_dir=folders.features,
            )
            summary = fit.train(model, config.phases, batches, settings, backup)
        shutil.rmtree(folders.features, ignore_errors=True)
        yield TrainedModel(
            model,
            {
                "train_images": len(labels),
                "precision_policy": policy,
                "replicas": self.strategy.num_replicas_in_sync,
                "phases": summary,
                "seconds": round(time.perf_counter() - started, 1),
            },
            folders.curves,
        )
        backup.remove()

    def _batches(self, records: TrainingRecords, budget: int) -> _RunBatches:
        config = self.config
        return _RunBatches(
            records,
            batch_size=distribute.global_batch_size(config.batch_size, self.strategy),
            image_size=config.image_size,
            budget=budget,
            augmenter=augment.build_augmenter(config.augment, config.seed, roi=config.roi),
            wide=bool(config.roi.margin_jitter),
            seed=config.seed,
        )


@dataclass(frozen=True)
class _RunBatches:
    """The batches of one run, from its records: with margin jitter, training crops the wide
    records; the plain (cached-features) view does not."""

    records: TrainingRecords
    batch_size: int
    image_size: int
    budget: int
    augmenter: keras.Sequential | None
    wide: bool
    seed: int

    def of_phases(self, *, caching: bool) -> fit.Batches:
        """The train and val batches, and the plain ones when a phase caches features."""
        train = self._read(
            "train", self.wide, augmenter=self.augmenter, shuffle=True, seed=self.seed
        )
        plain = self._read("train", shuffle=True, seed=self.seed) if caching else None
        return fit.Batches(train=train, val=self._read("val"), plain_train=plain)

    def _read(self, role: str, wide: bool = False, **options) -> tf.data.Dataset:
        return self.records.batches(
            role,
            wide,
            batch_size=self.batch_size,
            image_size=self.image_size,
            budget=self.budget,
            **options,
        )
