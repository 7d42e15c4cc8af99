"""Several machines, executed: two worker processes on this machine (CPU, free ports, TF_CONFIG).

The first test runs the real train stage as two workers, each in its own copy of a tiny project as
on two machines: both train in step (MultiWorkerMirroredStrategy, `distribute.fit_on_workers`).
One worker is killed mid-training, which stops the other; started again, both resume from their
backups and finish, only the chief keeps the model, metrics and DVCLive files, and the model
evaluates. The second gives two workers backups one epoch apart (one was killed before its
backup of the last epoch): both discard them and start the phase over. The third runs plain Keras
`fit` on two workers and checks that it still fails: once it passes (a Keras that trains on several
machines), `fit_on_workers` can give way to `fit`.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from medcls.demo.workspace import PROJECT, command_environment
from medcls.model.classifier import load_classifier
from medcls.training import inputs
from tests.support.builders import NAME, make_project
from tests.support.resume import KILLING_TRAIN, PATHS, logged_steps, resume_params

OUTPUTS = (PATHS.model, PATHS.summary("train"), PATHS.dvclive, PATHS.plots / "training_auc.json")
FINE_TUNE = {"epochs": 1, "patience": 1, "unfreeze_layers": 1}
TRAIN = ("-m", "stages.train", NAME)

KERAS_FIT = """
import numpy as np, keras, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
data = tf.data.Dataset.from_tensor_slices((np.ones((16, 4), "float32"), np.ones((16, 1), "float32")))
model.fit(data.batch(8), epochs=1, verbose=0)
"""

# A worker whose backup of phase "frozen" is after the epoch given, asked to agree with the others.
AGREEING = """
import sys
from pathlib import Path
import tensorflow as tf
from medcls.training import resume
strategy = tf.distribute.MultiWorkerMirroredStrategy()
backup = resume.TrainingBackup(Path("backup"), {"inputs": "the same"})
(backup.folder / "frozen").mkdir()
(backup.folder / "frozen" / "latest.json").write_text('{"epoch": %s}' % sys.argv[1])
backup.agree_with_workers("frozen", strategy)
print("progress", backup.progress("frozen"))
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(tasks: list[tuple[Path, Sequence[str]]]) -> list[subprocess.CompletedProcess]:
    """`python <arguments>` in `folder` as worker i of a localhost cluster for the i-th (folder,
    arguments) of `tasks`, all at once."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(len(tasks))]}
    processes = []
    for index, (folder, arguments) in enumerate(tasks):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = command_environment() | {"PYTHONPATH": str(PROJECT), "TF_CONFIG": json.dumps(tf_config)}
        processes.append(
            subprocess.Popen(
                [sys.executable, *arguments], cwd=folder, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        )
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:  # a worker left waiting for a failed peer would otherwise outlive the test
        for process in processes:
            process.kill()
    return [
        subprocess.CompletedProcess(process.args, process.returncode, *output)
        for process, output in zip(processes, outputs, strict=True)
    ]


def epoch_metrics(log: str) -> list[str]:
    """The metrics of each epoch as the progress bar prints them, without the timings."""
    return re.findall(r"(loss: .*val_loss: \S+)", log)


def outputs(results: list[subprocess.CompletedProcess]) -> str:
    return "\n".join(
        f"worker {index}:\n{result.stdout}{result.stderr[-5000:]}" for index, result in enumerate(results)
    )


def test_two_workers_train_through_the_train_stage_resume_and_only_the_chief_keeps_outputs(tmp_path):
    chief = make_project(tmp_path / "machine0", resume_params(epochs=3, patience=3, fine_tune=FINE_TUNE))
    worker = shutil.copytree(chief, tmp_path / "machine1")
    killed = run_workers([(chief, TRAIN), (worker, ("-c", KILLING_TRAIN, "frozen", "2"))])
    assert killed[0].returncode == 1 and killed[1].returncode == -9, outputs(killed)

    results = run_workers([(chief, TRAIN), (worker, TRAIN)])
    assert [result.returncode for result in results] == [0, 0], outputs(results)
    assert f"frozen: resuming after epoch 2 from {PATHS.train_backup}" in results[0].stdout
    assert f"frozen: resuming after epoch 2 from {PATHS.worker_outputs}-worker1/" in results[1].stdout
    logged = [epoch_metrics(result.stdout) for result in results]
    assert len(logged[0]) == 2 and logged[0] == logged[1]  # the same model, metrics of all images
    assert logged_steps(chief) == list(range(4))  # one continuous history across the kill

    summary = json.loads((chief / PATHS.summary("train")).read_text())
    assert summary["replicas"] == 2
    assert [summary["phases"][name]["epochs_run"] for name in ("frozen", "fine_tune")] == [3, 1]
    for output in OUTPUTS:
        assert (chief / output).exists(), output
        assert not (worker / output).exists(), output
    for machine in (chief, worker):
        assert not (machine / PATHS.train_backup).exists()
    assert list((worker / PATHS.worker_outputs.parent).iterdir()) == []

    model = load_classifier(chief / PATHS.model)
    test = inputs.split_batches(chief / PATHS.tfrecords, "test", batch_size=8, image_size=32, budget=0)
    model.compile(loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    scores = model.evaluate(test, return_dict=True, verbose=0)
    assert np.isfinite([scores["loss"], scores["auc"]]).all(), scores


def test_workers_whose_backups_disagree_all_start_the_phase_over(tmp_path):
    folders = [tmp_path / "machine0", tmp_path / "machine1"]
    for folder in folders:
        folder.mkdir()
    results = run_workers([(folder, ("-c", AGREEING, epoch)) for folder, epoch in zip(folders, "21")])
    assert [result.returncode for result in results] == [0, 0], outputs(results)
    for result in results:
        assert (
            "frozen: the workers' backups disagree (worker 0: after epoch 2, worker 1: after epoch 1)"
            in result.stdout
        ), outputs(results)
        assert "progress 0" in result.stdout


def test_keras_fit_still_fails_under_multi_worker_strategy(tmp_path):
    for result in run_workers([(tmp_path, ("-c", KERAS_FIT))] * 2):
        assert result.returncode != 0, "Keras trains on several workers: use fit, not fit_on_workers"
        assert "Invalid reduction dimension 0" in result.stderr or "PerReplica" in result.stderr, (
            result.stderr[-3000:]
        )
