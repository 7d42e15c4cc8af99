"""The train stage survives a SIGKILL: started again, it continues after the last finished epoch of
the phase it was in, skips the phases that finished (kept exactly as an uninterrupted run ends
them), and removes its backup once done.

The resumed phase itself is not bitwise that of an uninterrupted run: the backup holds weights,
optimizer and early stopping, not the random state of the input pipeline (shuffle order,
augmentation) nor of dropout, which continue from their start instead of from the epoch.

The stage runs as `python -m stages.train` in a tiny project (generated chest X-rays, a small CNN).
The kill is made deterministic by a wrapper that sends SIGKILL to its own process at the start of a
chosen epoch, i.e. mid-training, after the previous epoch's backup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ruamel.yaml import YAML

from medcls.demo.workspace import PROJECT, command_environment
from medcls.model.classifier import build_classifier
from medcls.model.losses import make_loss
from medcls.params import BceLoss, SmallCnnBackbone
from medcls.training import curves, distribute, fit, resume
from medcls.training.fit import Phase
from tests.support.builders import NAME, make_project
from tests.support.resume import KILLING_TRAIN, PATHS, logged_steps, resume_params
from tests.support.training import HEAD, PhaseRecorder, batches


def run(folder: Path, *args: str, **environment: str) -> subprocess.CompletedProcess:
    """A Python command in `folder` with this checkout importable; its output on failure."""
    env = command_environment() | {"PYTHONPATH": str(PROJECT)} | environment
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("resume") / "project", resume_params())


@pytest.fixture(scope="module")
def uninterrupted(project) -> dict:
    """A run that nothing interrupts: its output, phase summaries and logged steps. It starts beside
    the backup of a run of other params (another seed) killed mid-training, which it must discard."""
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = YAML().load(original)
    params["seed"] += 1
    with params_file.open("w") as stream:
        YAML().dump(params, stream)
    killed = run(project, "-c", KILLING_TRAIN, "frozen", "2")
    params_file.write_text(original)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert (project / PATHS.train_backup / "frozen" / "latest.json").is_file()
    result = run(project, "-m", "stages.train", NAME)
    assert result.returncode == 0, result.stdout + result.stderr
    phases = json.loads((project / PATHS.summary("train")).read_text())["phases"]
    return {"output": result.stdout, "phases": phases, "steps": logged_steps(project)}


def test_a_backup_of_other_params_is_discarded_not_resumed(uninterrupted):
    assert f"discarding {PATHS.train_backup}" in uninterrupted["output"]
    assert "resuming" not in uninterrupted["output"]
    assert uninterrupted["steps"] == list(range(6))


@pytest.mark.parametrize("phase, kill_at", [("frozen", 2), ("fine_tune", 5)])
def test_a_killed_train_stage_resumes_after_its_last_finished_epoch(
    project, uninterrupted, phase, kill_at
):
    backup = project / PATHS.train_backup
    (project / PATHS.model).unlink(missing_ok=True)  # as `dvc repro` does before it runs the stage
    shutil.rmtree(project / PATHS.dvclive)
    killed = run(project, "-c", KILLING_TRAIN, phase, str(kill_at))
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert (backup / phase / "latest.json").is_file()
    assert not (project / PATHS.model).exists()
    assert logged_steps(project) == list(range(kill_at))  # the curves so far, logged as it ran
    shutil.rmtree(project / PATHS.dvclive)  # as `dvc repro` does before it runs the stage again

    resumed = run(project, "-m", "stages.train", NAME)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads((project / PATHS.summary("train")).read_text())["phases"]
    assert f"{phase}: resuming after epoch {kill_at} from {PATHS.train_backup}" in resumed.stdout
    if phase == "fine_tune":  # the finished phase is kept as it was (training is deterministic)
        assert f"frozen: finished before the interruption, restored from {PATHS.train_backup}" in (
            resumed.stdout
        )
        assert summary["frozen"] == uninterrupted["phases"]["frozen"]
    assert f"Epoch {kill_at + 1}/" in resumed.stdout and f"Epoch {kill_at}/" not in resumed.stdout
    assert [summary[name]["epochs_run"] for name in ("frozen", "fine_tune")] == [4, 2]
    assert logged_steps(project) == list(range(6))  # one continuous history across the kill
    assert (project / PATHS.model).is_file()
    assert not backup.exists()


@pytest.mark.parametrize("loop", ["fit", "fit_on_workers"])
@pytest.mark.parametrize("logged", [1, 2])
def test_curves_resumed_after_the_first_epoch_go_on_at_step_1(tmp_path, loop, logged):
    """The train stage's DVCLive folder after its first epoch (step 0 logged; metrics.json says step
    0 whether the run was killed or ended there), resumed at epoch 1 with its backup as the stage
    does, under Keras' `fit` and under the loop that several workers run. With `logged` 2, the run
    was killed after logging its second epoch but before backing it up: epoch 1 is trained again."""
    features = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((features, np.arange(8) % 2)).batch(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    train = partial(model.fit, shuffle=False) if loop == "fit" else partial(distribute.fit_on_workers, model)

    for initial_epoch, epochs in [(0, logged), (1, 3)]:
        backup = resume.TrainingBackup(tmp_path / "backup", {"inputs": "the same"})
        assert backup.resuming == (initial_epoch > 0)
        shutil.rmtree(tmp_path / "dvclive", ignore_errors=True)  # as DVC does before a rerun
        with curves.resumable_live(tmp_path / "dvclive", backup) as live:
            train(
                batches, validation_data=batches, initial_epoch=initial_epoch, epochs=epochs,
                class_weight=None, callbacks=[curves.EpochCurves(live, backup, tmp_path / "plots")],
            )
    logged = pd.read_csv(tmp_path / "dvclive/plots/metrics/train/loss.tsv", sep="\t")["step"]
    assert logged.tolist() == [0, 1, 2]
    plotted = json.loads((tmp_path / "plots" / "training_loss.json").read_text())["loss"]
    assert [(row["split"], row["step"]) for row in plotted] == [
        (split, step) for split in ("train", "val") for step in (0, 1, 2)
    ]


def test_one_worker_agrees_with_itself_and_workers_that_disagree_train_the_phase_again(
    tmp_path, monkeypatch, capsys
):
    """A worker killed between another's backup of an epoch and its own is one epoch behind (or has
    the phase unfinished where the other finished it): every worker then starts the phase over."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    backup = resume.TrainingBackup(tmp_path / "backup", {"inputs": "the same"})
    stopping = keras.callbacks.EarlyStopping(monitor="loss", patience=5)
    features = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(
        features, np.arange(8) % 2, epochs=2, verbose=0,
        callbacks=[stopping, backup.epoch_callback("frozen", stopping)],
    )
    backup.record_phase(model, "frozen", {"epochs_run": 2})
    model.fit(
        features, np.arange(8) % 2, initial_epoch=2, epochs=4, verbose=0,
        callbacks=[stopping, backup.epoch_callback("fine_tune", stopping)],
    )
    strategy = tf.distribute.get_strategy()
    for phase in ("frozen", "fine_tune"):
        backup.agree_with_workers(phase, strategy)
    assert (backup.progress("frozen"), backup.progress("fine_tune")) == (resume.FINISHED, 4)

    other_worker = {"frozen": 2, "fine_tune": 3}  # killed before its backup of the last epoch
    monkeypatch.setattr(
        distribute, "on_every_worker", lambda strategy, value: [value, other_worker[phase]]
    )
    for phase, found in [
        ("frozen", "worker 0: finished, worker 1: after epoch 2"),
        ("fine_tune", "worker 0: after epoch 4, worker 1: after epoch 3"),
    ]:
        backup.agree_with_workers(phase, strategy)
        message = f"{phase}: the workers' backups disagree ({found}); every worker trains {phase} "
        assert message + "again from its first epoch" in capsys.readouterr().out
        assert backup.progress(phase) == 0
    assert backup.finished_phase(model, "frozen") is None
    assert backup.restore_epoch(model, "fine_tune") is None


def test_training_asks_the_workers_before_it_resumes_a_phase(tmp_path, monkeypatch, capsys):
    """A phase this worker finished, which another worker had not, is trained again, not skipped."""
    model = build_classifier(SmallCnnBackbone(filters=[4]), HEAD, 16, seed=0)
    backup = resume.TrainingBackup(tmp_path / "backup", {"inputs": "the same"})
    recorder = PhaseRecorder()
    for _ in range(2):
        fit.train(
            model, [Phase("frozen", 1, 1e-3, 1)], fit.Batches(batches(0), batches(1)),
            fit.FitSettings(make_loss(BceLoss()), None, jit_compile=False, callbacks=[recorder]),
            backup,
        )
        monkeypatch.setattr(distribute, "on_every_worker", lambda strategy, value: [value, 0])
    assert "frozen: the workers' backups disagree (worker 0: finished, worker 1: not started)" in (
        capsys.readouterr().out
    )
    assert recorder.epochs == [0, 0]
