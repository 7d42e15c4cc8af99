"""Data-parallel training: one strategy for one device or several GPUs.

The train stage runs unchanged on one device or several GPUs: `choose_strategy` reads the machine
(GPUs), the model is built and compiled in the strategy's scope and each step's batch is split across
the replicas.

Several machines (a `TF_CONFIG` cluster) are refused: Keras 3's `fit` cannot run under
MultiWorkerMirroredStrategy (see `MultiWorkerUnsupportedError`), as `tests/test_multi_worker.py`
shows with two real worker processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import tensorflow as tf

from medcls.pipeline.errors import PipelineError

SINGLE, MIRRORED, MULTI_WORKER = "single", "mirrored", "multi_worker"


class MultiWorkerUnsupportedError(PipelineError):
    """A cluster in TF_CONFIG. Keras 3's `fit` fails under MultiWorkerMirroredStrategy (3.15 with
    TensorFlow 2.20, run on two processes): it reduces a whole input batch, a tuple the collective
    reduce cannot take, then every step's scalar logs with `axis=0` (tensorflow/tensorflow#72388).
    Refused before any work rather than failing in Keras' train step."""


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
        raise MultiWorkerUnsupportedError(
            "TF_CONFIG describes a cluster of several machines, but Keras 3 cannot train with "
            "MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388); unset TF_CONFIG and train "
            "on one machine (its GPUs are all used)"
        )
    if kind == MIRRORED:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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
