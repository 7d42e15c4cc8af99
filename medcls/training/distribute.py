"""Data-parallel training: one strategy for one device, several GPUs, or several machines.

The train stage runs unchanged everywhere: `choose_strategy` reads the machine (GPUs) and the
`TF_CONFIG` environment variable (the cluster), the model is built and compiled in the strategy's
scope, each step's batch is split across the replicas, and only the chief writes outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

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


def is_chief(tf_config: Mapping | None = None) -> bool:
    """Whether this process writes the outputs: the "chief" task of a cluster that has one, else
    worker 0; without a cluster, always."""
    config = _tf_config() if tf_config is None else tf_config
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and task.get("index", 0) == 0


def task_folder(folder: Path, tf_config: Mapping | None = None) -> Path:
    """`folder` for this process's own scratch files; `<folder>-<type>-<index>` for a task of a
    cluster, so that workers that share a disk (e.g. on one machine) never write the same files."""
    config = _tf_config() if tf_config is None else tf_config
    if "cluster" not in config:
        return folder
    task = config.get("task", {})
    return folder.with_name(f"{folder.name}-{task.get('type', 'worker')}-{task.get('index', 0)}")


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
