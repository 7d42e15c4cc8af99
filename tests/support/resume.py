"""The train stage killed mid-phase, shared by the resume and multi-worker tests: its params, the
script that kills it, and the steps its curves logged."""

from pathlib import Path

import pandas as pd

from medcls.pipeline.paths import DatasetPaths
from tests.support.builders import NAME, one_dataset_params

PATHS = DatasetPaths(NAME)
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


def resume_params(**train_changes) -> dict:
    """One tiny dataset NAME, augmented, trained for 4 + 2 epochs (or as changed), evaluated
    without extras."""
    params = one_dataset_params(augment={"flip_horizontal": True})
    dataset = params["datasets"][NAME]
    dataset["train"] |= SCHEDULE | train_changes
    dataset["evaluate"] |= {"bootstrap": 0, "baseline": False}
    return params


def logged_steps(folder: Path) -> list[int]:
    return pd.read_csv(folder / PATHS.dvclive / "plots/metrics/train/loss.tsv", sep="\t")["step"].tolist()
