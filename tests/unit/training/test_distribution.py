"""Strategy choice and real training under MirroredStrategy on two CPU replicas.

The MirroredStrategy run needs two logical CPU devices, which can only be configured before
TensorFlow starts, so it runs in a fresh interpreter: `python -m tests.unit.training.test_distribution`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from medcls.model.classifier import build_classifier
from medcls.model.losses import make_loss
from medcls.params import BceLoss, SmallCnnBackbone
from medcls.training import distribute
from medcls.training.fit import Batches, FitSettings, Phase, train
from tests.support.training import HEAD, batches

PROJECT = Path(__file__).resolve().parents[3]
WORKERS = {"worker": ["host0:2222", "host1:2222"]}
CHIEF_AND_WORKER = {"chief": ["host0:2222"], "worker": ["host1:2222"]}


def task(cluster: dict, kind: str, index: int = 0) -> dict:
    """A TF_CONFIG for one task of `cluster`."""
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


@pytest.mark.parametrize(
    "tf_config, gpus, kind",
    [
        ({}, 0, distribute.SINGLE),
        ({}, 1, distribute.SINGLE),
        ({}, 4, distribute.MIRRORED),
        (task({"worker": ["host0:2222"]}, "worker"), 2, distribute.MIRRORED),
        (task(WORKERS, "worker", 1), 0, distribute.MULTI_WORKER),
        (task(CHIEF_AND_WORKER, "chief"), 8, distribute.MULTI_WORKER),
    ],
)
def test_strategy_kind_follows_the_cluster_then_the_gpus(tf_config, gpus, kind):
    assert distribute.strategy_kind(tf_config, gpus) == kind


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        ({}, True),
        (task(WORKERS, "worker"), True),
        (task(WORKERS, "worker", 1), False),
        (task(CHIEF_AND_WORKER, "chief"), True),
        (task(CHIEF_AND_WORKER, "worker"), False),
    ],
)
def test_the_chief_is_the_chief_task_else_worker_0(tf_config, chief):
    assert distribute.is_chief(tf_config) == chief


def test_datasets_are_sharded_by_element():
    ds = distribute.shard_by_data(tf.data.Dataset.range(4))
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_training_on_several_workers_drops_a_last_partial_batch():
    pairs = tf.data.Dataset.range(10).batch(4).map(lambda values: (values, values))
    assert [len(images) for images, _ in distribute._whole(pairs)] == [4, 4]


def test_validation_on_several_workers_skips_an_empty_share_of_a_batch():
    """A worker's share of the last batch can be empty; oneDNN's convolutions fail on it (CPU)."""
    model = build_classifier(SmallCnnBackbone(filters=[4, 8]), HEAD, 16, seed=0)
    model.compile(loss=make_loss(BceLoss()), metrics=[keras.metrics.AUC(name="auc")])
    step = tf.function(distribute._unless_empty(model.test_step))
    images, labels = next(iter(batches(0)))
    scores = []
    for share in (images, labels), (images[:0], labels[:0]):
        step(share)
        scores.append({name: float(value) for name, value in model.get_metrics_result().items()})
    assert scores[1] == scores[0]


def test_training_under_mirrored_strategy_on_two_cpu_replicas():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "tests.unit.training.test_distribution"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["global_batch_size"] == 4
    assert report["mirrored_variables"]
    assert [phase["epochs_run"] for phase in report["phases"].values()] == [1, 1]
    assert report["phases"]["frozen"]["cached_features"] is True
    assert report["finite_predictions"]


def train_on_two_cpu_replicas() -> dict:
    """Train the tiny classifier for one cached frozen epoch and one fine-tuning epoch."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    batch_size = distribute.global_batch_size(2, strategy)
    assert batch_size == 4  # what tests.support.training.batches delivers
    with strategy.scope():
        model = build_classifier(SmallCnnBackbone(filters=[4, 8]), HEAD, 16, seed=0)
        phases = train(
            model,
            [
                Phase("frozen", 1, 1e-3, 1, cache_features=True),
                Phase("fine_tune", 1, 1e-5, 1, unfreeze_layers=1),
            ],
            Batches(
                distribute.shard_by_data(batches(0)),
                distribute.shard_by_data(batches(1)),
                plain_train=distribute.shard_by_data(batches(0)),
            ),
            FitSettings(loss=make_loss(BceLoss()), class_weight={0: 1.0, 1: 1.0}, jit_compile=False),
        )
    predictions = model.predict(batches(2), verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "global_batch_size": batch_size,
        "mirrored_variables": all(
            isinstance(weight.value, tf.distribute.DistributedValues) for weight in model.weights
        ),
        "phases": phases,
        "finite_predictions": bool(np.isfinite(predictions).all() and len(predictions) == 8),
    }


if __name__ == "__main__":
    print(json.dumps(train_on_two_cpu_replicas()))
