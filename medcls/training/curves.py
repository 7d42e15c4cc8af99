"""The train stage's learning curves: logged every epoch with DVCLive into the stage's DVCLive
folder, and rewritten after every epoch as one plot file per metric holding train and val
(`training_auc.json`, `training_loss.json`), so `dvc plots show` draws both on one chart while a
run goes and after it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from medcls.training.resume import TrainingBackup

# The metrics drawn as plots, each with train and val on one chart; DVCLive logs more.
PLOTTED = ("auc", "loss")
# DVCLive's folder of each split's .tsv files, and the split's name in the plot files.
SPLITS = {"train": "train", "eval": "val"}

PARTIAL = ".partial"  # a file being copied


def resumable_live(dvclive_dir: Path, backup: TrainingBackup) -> Live:
    """DVCLive logging into `dvclive_dir` as training goes (VS Code and DVC Studio draw the curves
    of a run in progress), to use as a context manager, so the callback's `end()` after each
    phase's `fit` is deferred to the end of training.

    A resumed run appends to the curves logged before the interruption: `EpochCurves` keeps a copy
    with `backup`, which is put back here, because DVC deletes the stage's outputs before it runs
    the stage again. The stage itself is the experiment DVC records (`save_dvc_exp` off: DVCLive
    would otherwise warn on every run that it ignores it inside `dvc repro`).
    """
    if backup.resuming:
        _copy_curves(_kept_curves(backup), dvclive_dir)
    return Live(
        str(dvclive_dir), dvcyaml=None, report=None, save_dvc_exp=False, resume=backup.resuming
    )


def _kept_curves(backup: TrainingBackup) -> Path:
    return backup.folder / "dvclive"


def _copy_curves(source: Path, target: Path) -> None:
    """Copy DVCLive's files (metrics.json and the plots) from `source` into `target`, each file
    replaced whole (a kill mid-copy leaves every file as it was or as it is now); the folds'
    folders inside a model's DVCLive folder are left alone."""
    files = [source / "metrics.json", *(source / "plots").rglob("*")]
    for path in (path for path in files if path.is_file() and path.suffix != PARTIAL):
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + PARTIAL)
        shutil.copyfile(path, partial)
        os.replace(partial, copy)


class EpochCurves(DVCLiveCallback):
    """DVCLive's Keras callback, logging each epoch at its own number as the step, and keeping a copy
    of the curves with `backup` after every epoch (see `resumable_live`).

    DVCLive's own step counts the epochs it logged, and a resumed `Live` guesses where to go on
    from the step saved in metrics.json, which reads 0 both before any epoch and after the first:
    a run killed after its first epoch would log step 0 twice. The epoch number, which Keras (and
    `distribute.fit_on_workers`) count on across a resume and across the training phases, needs no
    guess.

    The epoch is logged before it is backed up, so a run killed in between trains that epoch again
    when resumed: what was logged from the epoch a fit starts at is dropped first, so no step is
    logged twice.
    """

    def __init__(self, live: Live, backup: TrainingBackup, plots_dir: Path) -> None:
        super().__init__(live=live)
        self.backup, self.plots_dir = backup, plots_dir

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first_epoch = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._first_epoch:
            _drop_steps_from(Path(self.live.plots_dir) / "metrics", epoch)
            self._first_epoch = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.live.step = epoch
        super().on_epoch_end(epoch, logs)
        _copy_curves(Path(self.live.dir), _kept_curves(self.backup))
        write_plot_files(Path(self.live.dir), self.plots_dir)


def _drop_steps_from(metrics_dir: Path, step: int) -> None:
    """Remove the rows of `step` and later from DVCLive's .tsv files under `metrics_dir`."""
    for path in metrics_dir.rglob("*.tsv"):
        frame = pd.read_csv(path, sep="\t")
        if (frame["step"] >= step).any():
            frame[frame["step"] < step].to_csv(path, sep="\t", index=False)


def write_plot_files(dvclive_dir: Path, plots_dir: Path) -> list[Path]:
    """`plots_dir`/training_<metric>.json for each PLOTTED metric: rows {step, split, <metric>}
    from DVCLive's train and eval .tsv files under `dvclive_dir`; each file replaced whole."""
    metrics_dir = dvclive_dir / "plots" / "metrics"
    if not any(metrics_dir.rglob("*.tsv")):
        raise FileNotFoundError(
            f"no DVCLive .tsv files under {metrics_dir}; did training log with DVCLive?"
        )
    written = []
    for metric in PLOTTED:
        rows = []
        for folder, split in SPLITS.items():
            path = metrics_dir / folder / f"{metric}.tsv"
            if path.is_file():
                frame = pd.read_csv(path, sep="\t")
                if not {"step", metric} <= set(frame.columns):
                    raise ValueError(
                        f"{path}: expected columns step and {metric}, found {list(frame.columns)}"
                    )
                rows += [
                    {"step": int(step), "split": split, metric: float(value)}
                    for step, value in zip(frame["step"], frame[metric])
                ]
        target = plots_dir / f"training_{metric}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + PARTIAL)
        partial.write_text(json.dumps({metric: rows}, indent=2) + "\n")
        os.replace(partial, target)
        written.append(target)
    return written
