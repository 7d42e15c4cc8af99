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

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.data.manifest import build_manifest
from medcls.data.splitting import grouped_stratified_split
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment
from medcls.images.tfrecords import write_tfrecords
from medcls.pipeline.paths import DatasetPaths
from tests.test_pipeline_e2e import TINY

NAME = "demo"
PATHS = DatasetPaths(NAME)
ROI = dict(size=32, use_mask=False, margin=0.0, mask_background=False, keep_aspect=False)
SCHEDULE = {"epochs": 4, "patience": 4, "fine_tune": {"epochs": 2, "patience": 2, "unfreeze_layers": 1}}

# Runs the train stage, killing the process (SIGKILL: no clean-up of any kind) when the named phase
# is about to start the given epoch.
KILLING_TRAIN = f"""
import os, signal, sys
from medcls.training import resume
phase, kill_at = sys.argv[1], int(sys.argv[2])
sys.argv[1:] = ["{NAME}"]
class KillAt(resume._EpochBackup):
    def on_epoch_begin(self, epoch, logs=None):
        if self.folder.name == phase and epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
resume._EpochBackup = KillAt
from stages.train import train
from medcls.pipeline.stage import run_stage
run_stage(train)
"""


def make_project(folder: Path, images_per_shard: int = 8, **train_changes) -> Path:
    """A params.yaml with one tiny dataset NAME and its TFRecords, as the roi stage writes them."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    dataset = params["datasets"]["chest_xray"] | copy.deepcopy(TINY)
    dataset["train"] |= SCHEDULE | train_changes
    dataset["augment"] = {"flip_horizontal": True}
    dataset["evaluate"] |= {"bootstrap": 0, "baseline": False}
    params |= {"workers": 1, "datasets": {NAME: dataset}, "trained": [NAME]}
    folder.mkdir(parents=True)
    with (folder / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)
    raw = synthetic.make_kermany(folder / "raw", n_patients_per_class=8, images_per_patient=2, size=32)
    rows, _ = build_manifest(raw, "kermany", ["NORMAL", "PNEUMONIA"], workers=1)
    rows["split"] = grouped_stratified_split(rows, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    write_tfrecords(
        rows, raw, folder / PATHS.tfrecords, images_per_shard=images_per_shard, workers=1, **ROI
    )
    return folder


def run(folder: Path, *args: str, **environment: str) -> subprocess.CompletedProcess:
    """A Python command in `folder` with this checkout importable; its output on failure."""
    env = command_environment() | {"PYTHONPATH": str(PROJECT)} | environment
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


def logged_steps(folder: Path) -> list[int]:
    return pd.read_csv(folder / PATHS.dvclive / "plots/metrics/train/loss.tsv", sep="\t")["step"].tolist()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("resume") / "project")


@pytest.fixture(scope="module")
def uninterrupted(project) -> dict:
    """The phase summaries of a run that nothing interrupts."""
    result = run(project, "-m", "stages.train", NAME)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((project / PATHS.metrics("train")).read_text())["phases"]


@pytest.mark.parametrize("phase, kill_at", [("frozen", 2), ("fine_tune", 5)])
def test_a_killed_train_stage_resumes_after_its_last_finished_epoch(
    project, uninterrupted, phase, kill_at
):
    backup = project / PATHS.train_backup
    (project / PATHS.model).unlink(missing_ok=True)  # as `dvc repro` does before it runs the stage
    killed = run(project, "-c", KILLING_TRAIN, phase, str(kill_at))
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert (backup / phase / "latest.json").is_file()
    assert not (project / PATHS.model).exists()

    resumed = run(project, "-m", "stages.train", NAME)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads((project / PATHS.metrics("train")).read_text())["phases"]
    assert f"{phase}: resuming after epoch {kill_at} from {PATHS.train_backup}" in resumed.stdout
    if phase == "fine_tune":  # the finished phase is kept as it was (training is deterministic)
        assert f"frozen: finished before the interruption, restored from {PATHS.train_backup}" in (
            resumed.stdout
        )
        assert summary["frozen"] == uninterrupted["frozen"]
    assert f"Epoch {kill_at + 1}/" in resumed.stdout and f"Epoch {kill_at}/" not in resumed.stdout
    assert [summary[name]["epochs_run"] for name in ("frozen", "fine_tune")] == [4, 2]
    assert logged_steps(project) == list(range(6))  # one continuous history across the kill
    assert (project / PATHS.model).is_file()
    assert not backup.exists()


def test_a_backup_of_other_params_is_discarded_not_resumed(project):
    killed = run(project, "-c", KILLING_TRAIN, "frozen", "2")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    params = YAML().load((project / "params.yaml").read_text())
    params["seed"] += 1
    with (project / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)
    fresh = run(project, "-m", "stages.train", NAME)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert f"discarding {PATHS.train_backup}" in fresh.stdout
    assert "resuming" not in fresh.stdout
    assert logged_steps(project) == list(range(6))
