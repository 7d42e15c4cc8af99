"""Stage train: two-phase transfer learning (frozen backbone, then fine-tuning) on the train TFRecords.

`python -m stages.train <dataset> <fold>` trains one cross-validation fold's model instead (the
train_fold stage): on the train and val images of every other fold, validated on its own.

Runs on one device, on several GPUs or on several machines (see `medcls.training.distribute`): the
same command on every machine of a `TF_CONFIG` cluster; only the chief's outputs are kept. Every
epoch is backed up (`medcls.training.resume`): a killed run (or cluster) started again continues
after its last finished epoch.
"""

import shutil
import time
from functools import partial
from pathlib import Path

import tensorflow as tf

from medcls.model import classifier, losses
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage
from medcls.training import augment, curves, determinism, distribute, fit, inputs, resume
from medcls.training.records import TrainingRecords


def train(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    strategy = distribute.choose_strategy()
    with distribute.output_root(paths.worker_outputs) as root:
        _train(strategy, root, params, dataset, paths)


def _train(
    strategy: tf.distribute.Strategy,
    root: Path,
    params: Params,
    dataset: DatasetParams,
    paths: DatasetPaths,
) -> None:
    """Train under `strategy` and write the outputs under `root` (the project, on the chief)."""
    started = time.perf_counter()
    seed, schedule = params.seed, dataset.train
    determinism.configure_determinism(schedule.deterministic, seed)
    policy = fit.configure_precision(schedule.mixed_precision)
    batch_size = distribute.global_batch_size(schedule.batch_size, strategy)
    budget = inputs.memory_budget(schedule.memory_fraction)

    records = TrainingRecords.of(paths)
    labels = records.training_labels()
    batches = partial(
        records.batches, batch_size=batch_size, image_size=dataset.image_size, budget=budget
    )

    # with margin jitter, training crops the wide records; the plain (cached-features) view does not
    augmenter = augment.build_augmenter(dataset.augment, seed, roi=dataset.roi)
    wide = bool(dataset.roi.margin_jitter)
    train_batches = batches("train", wide, augmenter=augmenter, shuffle=True, seed=seed)
    planned = fit.planned_phases(schedule, params.lr, params.fine_tune_lr)
    caching = any(phase.cache_features for phase in planned)
    plain_batches = batches("train", shuffle=True, seed=seed) if caching else None
    backup = resume.TrainingBackup(
        root / paths.train_backup, resume.inputs_fingerprint(params, dataset, paths.tfrecords)
    )
    spill_dir = root / paths.feature_cache

    dvclive_dir = root / paths.dvclive
    with strategy.scope(), curves.resumable_live(dvclive_dir, backup) as live:
        model = classifier.build_classifier(
            dataset.backbone, dataset.head, dataset.image_size, seed=seed
        )
        summary = fit.train(
            model,
            train_batches,
            batches("val"),
            phases=planned,
            loss=losses.make_loss(dataset.loss),
            class_weight=losses.class_weights(labels, dataset.class_weight),
            jit_compile=schedule.jit_compile,
            callbacks=[curves.EpochCurves(live, backup)],
            plain_train_ds=plain_batches,
            backup=backup,
            feature_budget=budget,
            spill_dir=spill_dir,
        )
    shutil.rmtree(spill_dir, ignore_errors=True)
    (root / paths.model).parent.mkdir(parents=True, exist_ok=True)
    model.save(root / paths.model)
    curves.save_training_curves_png(
        dvclive_dir / "plots" / "metrics", root / paths.plots / "training_curves.png"
    )
    write_json(
        root / paths.summary("train"),
        {
            "train_images": len(labels),
            "precision_policy": policy,
            "replicas": strategy.num_replicas_in_sync,
            "phases": summary,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    backup.remove()  # last: a run killed before this point resumes


if __name__ == "__main__":
    run_stage(train)
