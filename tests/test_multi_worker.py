"""Several machines, executed: two worker processes on this machine (CPU, free ports, TF_CONFIG).

Keras 3's `fit` fails under MultiWorkerMirroredStrategy, so the train stage refuses a cluster with
a one-line error before any work. The first test runs the real train stage as two workers, each in
its own copy of a tiny project as on two machines: both stop with that error and write nothing.
The second runs plain Keras `fit` on two workers and checks that it still fails as the error says:
once it passes (a Keras that trains on several machines), the refusal can be lifted.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from medcls.demo.workspace import PROJECT, command_environment
from tests.test_resume import NAME, PATHS, make_project

OUTPUTS = (PATHS.model, PATHS.metrics("train"), PATHS.dvclive, PATHS.train_backup)

KERAS_FIT = """
import numpy as np, keras, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
data = tf.data.Dataset.from_tensor_slices((np.ones((16, 4), "float32"), np.ones((16, 1), "float32")))
model.fit(data.batch(8), epochs=1, verbose=0)
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(folders: list[Path], *command: str) -> list[subprocess.CompletedProcess]:
    """`python <command>` as worker i of a localhost cluster in folders[i], all at once."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(len(folders))]}
    processes = []
    for index, folder in enumerate(folders):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = command_environment() | {"PYTHONPATH": str(PROJECT), "TF_CONFIG": json.dumps(tf_config)}
        processes.append(
            subprocess.Popen(
                [sys.executable, *command], cwd=folder, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        )
    outputs = [process.communicate(timeout=300) for process in processes]
    return [
        subprocess.CompletedProcess(process.args, process.returncode, *output)
        for process, output in zip(processes, outputs, strict=True)
    ]


def test_the_train_stage_refuses_a_cluster_on_every_worker_and_writes_nothing(tmp_path):
    first = make_project(tmp_path / "machine0")
    machines = [first, shutil.copytree(first, tmp_path / "machine1")]
    for machine, result in zip(machines, run_workers(machines, "-m", "stages.train", NAME), strict=True):
        assert result.returncode == 1, result.stdout + result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: TF_CONFIG describes a cluster"), result.stderr
        assert "tensorflow/tensorflow#72388" in last
        for output in OUTPUTS:
            assert not (machine / output).exists(), output


def test_keras_fit_still_fails_under_multi_worker_strategy(tmp_path):
    for result in run_workers([tmp_path, tmp_path], "-c", KERAS_FIT):
        assert result.returncode != 0, "Keras trains on several workers now: lift the refusal"
        assert "Invalid reduction dimension 0" in result.stderr or "PerReplica" in result.stderr, (
            result.stderr[-3000:]
        )
