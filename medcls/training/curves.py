"""The train stage's learning curves: logged every epoch with DVCLive into the stage's DVCLive
folder, drawn as a figure from its per-epoch .tsv files once training ends."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path

import pandas as pd
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from matplotlib.figure import Figure

from medcls.training.resume import TrainingBackup

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

    def __init__(self, live: Live, backup: TrainingBackup) -> None:
        super().__init__(live=live)
        self.backup = backup

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


def _drop_steps_from(metrics_dir: Path, step: int) -> None:
    """Remove the rows of `step` and later from DVCLive's .tsv files under `metrics_dir`."""
    for path in metrics_dir.rglob("*.tsv"):
        frame = pd.read_csv(path, sep="\t")
        if (frame["step"] >= step).any():
            frame[frame["step"] < step].to_csv(path, sep="\t", index=False)


def _read_dvclive_series(metrics_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """{metric: {split: frame}} from DVCLive's `<split>/<metric>.tsv` files (columns step, <metric>)."""
    paths = sorted(metrics_dir.rglob("*.tsv"))
    if not paths:
        raise FileNotFoundError(
            f"no DVCLive .tsv files under {metrics_dir}; did training log with DVCLive?"
        )
    series: dict[str, dict[str, pd.DataFrame]] = defaultdict(dict)
    for path in paths:
        frame = pd.read_csv(path, sep="\t")
        if not {"step", path.stem} <= set(frame.columns):
            raise ValueError(
                f"{path}: expected columns step and {path.stem}, found {list(frame.columns)}"
            )
        split = path.parent.name if path.parent != metrics_dir else path.stem
        series[path.stem][split] = frame
    return series


def training_curves_figure(dvclive_dir: Path) -> Figure:
    """One panel per metric logged in `dvclive_dir` (loss first), one line per split, against the
    training step."""
    metrics_dir = dvclive_dir / "plots" / "metrics"
    series = _read_dvclive_series(metrics_dir)
    names = sorted(series, key=lambda name: (name != "loss", name))
    figure = Figure(figsize=(5 * len(names), 4))
    for axis, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names):
        for split, frame in sorted(series[name].items()):
            axis.plot(frame["step"], frame[name], label=split)
        axis.set(xlabel="step", ylabel=name, title=name)
        axis.legend()
    return figure
