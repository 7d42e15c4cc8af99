"""Data-parallel training: one strategy for one device, several GPUs or several machines.

The train stage runs unchanged everywhere: `choose_strategy` reads the machine (GPUs) and the
`TF_CONFIG` environment variable (a cluster of machines), the model is built and compiled in the
strategy's scope and each step's batch is split across the replicas.

On several machines Keras 3's `fit` cannot run (`fit_on_workers` says why), so `fit_on_workers`
runs the model's own train and test steps in a loop of its own; every worker runs the same steps,
and only the chief's outputs are kept (`output_root`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import keras
import tensorflow as tf

SINGLE, MIRRORED, MULTI_WORKER = "single", "mirrored", "multi_worker"


def _tf_config() -> Mapping:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def strategy_kind(tf_config: Mapping, gpus: int) -> str:
    """MULTI_WORKER when `tf_config` describes a cluster of several tasks, else MIRRORED with
    several GPUs, else SINGLE (the default strategy: no replication, no overhead)."""
    tasks = sum(len(addresses) for addresses in tf_config.get("cluster", {}).values())
    if tasks > 1:
        return MULTI_WORKER
    return MIRRORED if gpus > 1 else SINGLE


def choose_strategy() -> tf.distribute.Strategy:
    """The strategy for this process; call it first, before any other TensorFlow work (a
    multi-worker strategy must be created before TensorFlow initialises its runtime)."""
    kind = strategy_kind(_tf_config(), len(tf.config.list_physical_devices("GPU")))
    if kind == MULTI_WORKER:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == MIRRORED:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(tf_config: Mapping) -> bool:
    """Whether this task's outputs are kept: the "chief" task of a cluster that has one, else
    worker 0; without a cluster, always."""
    task = tf_config.get("task", {})
    chief = "chief" if "chief" in tf_config.get("cluster", {}) else "worker"
    return task.get("type", chief) == chief and task.get("index", 0) == 0


@contextmanager
def output_root(scratch: Path) -> Iterator[Path]:
    """The folder this task writes its outputs under: the project itself on the chief (or without a
    cluster); on any other worker `<scratch>-<type><index>`, removed when the block completes.

    The other workers write everything the chief writes (model, metrics, DVCLive, backup) because
    saving reads the variables, which every worker must do in step; their own folder keeps them
    from writing over the chief's files where workers share a disk, and keeps their backup, which
    a restarted cluster resumes from, until the stage completes.
    """
    tf_config = _tf_config()
    if is_chief(tf_config):
        yield Path()
        return
    task = tf_config["task"]
    root = scratch.with_name(f"{scratch.name}-{task['type']}{task['index']}")
    yield root
    shutil.rmtree(root)


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy) -> int:
    """The batch one step consumes: `per_replica` images on each replica, so the per-device
    batch (and memory use) matches the param whatever the number of devices."""
    return per_replica * strategy.num_replicas_in_sync


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by element, not by file, across workers: each worker reads every shard file and keeps
    its share of the batches, so a split with fewer files than workers still feeds every worker."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def on_several_workers(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` trains on a cluster (the one case `fit_on_workers` is for)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def on_every_worker(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` as each worker has it, in worker order; `[value]` without a cluster. On a cluster it
    is a collective op: every worker must call it at the same point."""
    if not on_several_workers(strategy):
        return [value]
    local = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant([value], tf.float32)  # the type every collective implementation takes
    )
    per_replica = strategy.gather(local, axis=0).numpy()
    return [int(each) for each in per_replica[:: len(strategy.extended.worker_devices)]]


def fit_on_workers(
    model: keras.Model,
    train_data: tf.data.Dataset,
    *,
    validation_data: tf.data.Dataset,
    initial_epoch: int,
    epochs: int,
    class_weight: dict[int, float] | None,
    callbacks: list[keras.callbacks.Callback],
) -> keras.callbacks.History:
    """`model.fit(..., verbose=2)` under MultiWorkerMirroredStrategy, where Keras 3.15's `fit`
    fails (tensorflow/tensorflow#72388): before the first step it reduces a whole input batch
    across the workers (`strategy.reduce` on a tuple, which the collective reduce cannot take),
    and after every step it reduces the scalar logs on `axis=0`.

    The model's own `train_step` and `test_step` do run under the strategy: each worker takes its
    share of every global batch (the datasets are sharded by element, so all workers run the same
    number of steps), gradients are summed across workers by the optimizer, and the metrics, which
    Keras synchronises on read, are read once per epoch, summed over all workers. The callbacks see
    the same logs as under `fit` (early stopping, DVCLive, the epoch backup). The steps run without
    XLA (`jit_compile` is not applied).

    A worker's share of the last, partial batch may be empty, and TensorFlow's oneDNN convolutions
    (CPU) fail on an empty batch: training drops that batch (the shuffle drops other images each
    epoch), validation skips empty shares so that every image is scored.
    """
    strategy = model.distribute_strategy
    train_batches = _distributed(_with_class_weights(_whole(train_data), class_weight), strategy)
    val_batches = _distributed(validation_data, strategy)
    train_step = tf.function(
        lambda batch: strategy.run(model.train_step, args=(batch,)), reduce_retracing=True
    )
    test_step = tf.function(
        lambda batch: strategy.run(_unless_empty(model.test_step), args=(batch,)),
        reduce_retracing=True,
    )
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=True, model=model, verbose=2, epochs=epochs,
        steps=None,
    )
    model.stop_training, logs = False, {}
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        logs = _run_epoch(train_step, train_batches, model, callback_list.on_train_batch_end)
        validation = _run_epoch(test_step, val_batches, model)
        logs |= {f"val_{name}": value for name, value in validation.items()}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history


def _run_epoch(step, batches, model: keras.Model, after_step=lambda step: None) -> dict[str, float]:
    """One pass of `step` over `batches`; the model's metrics over the pass, on all workers."""
    model.reset_metrics()
    for number, batch in enumerate(batches):
        step(batch)
        after_step(number)
    return {name: float(value) for name, value in model.get_metrics_result().items()}


def _whole(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` without its last batch if that one is smaller than the first."""

    def size(batch: tuple) -> tf.Tensor:
        return tf.shape(batch[0], out_type=tf.int64)[0]

    def with_first_size(first: tf.Tensor, batch: tuple) -> tuple:
        first = tf.where(first < 0, size(batch), first)
        return first, (batch, size(batch) == first)

    def whole(batch: tuple, is_whole: tf.Tensor) -> tf.Tensor:
        return is_whole

    def unflagged(batch: tuple, is_whole: tf.Tensor) -> tuple:
        return batch

    flagged = batches.scan(tf.constant(-1, tf.int64), with_first_size)
    return flagged.filter(whole).map(unflagged)


def _unless_empty(step):
    """`step` on a batch, skipped on an empty one (a `tf.cond`: no collective op may be in `step`)."""

    def skipping(batch: tuple) -> None:
        def run() -> None:
            step(batch)

        tf.cond(tf.size(batch[1]) > 0, run, lambda: None)

    return skipping


def _distributed(ds: tf.data.Dataset, strategy: tf.distribute.Strategy):
    return strategy.experimental_distribute_dataset(shard_by_data(ds))


def _with_class_weights(ds: tf.data.Dataset, class_weight: dict[int, float] | None) -> tf.data.Dataset:
    """(images, labels, sample weights) batches: each image weighted by its class, as `fit` does
    with `class_weight` (labels are 0 or 1)."""
    if class_weight is None:
        return ds
    weights = tf.constant([class_weight[0], class_weight[1]], tf.float32)
    return ds.map(
        lambda images, labels: (
            images, labels, tf.gather(weights, tf.cast(tf.reshape(labels, [-1]), tf.int32))
        )
    )
