"""The train stage's learning curves: logged every epoch with DVCLive, drawn as a figure from its
per-epoch .tsv files."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pandas as pd
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from matplotlib.figure import Figure

from medcls.training.resume import TrainingBackup


def resumable_live(backup: TrainingBackup) -> Live:
    """DVCLive logging into `backup`'s folder, to use as a context manager, so the callback's
    `end()` after each phase's `fit` is deferred to the end of training. A resumed run appends to
    the curves logged before the interruption: they are kept with the backup because DVC deletes
    the stage's outputs before it runs the stage again."""
    return Live(str(_live_folder(backup)), dvcyaml=None, report=None, resume=backup.resuming)


def publish(backup: TrainingBackup, dvclive_dir: Path) -> None:
    """Put the curves logged in `backup`'s folder in `dvclive_dir`."""
    shutil.rmtree(dvclive_dir, ignore_errors=True)
    shutil.copytree(_live_folder(backup), dvclive_dir)


def _live_folder(backup: TrainingBackup) -> Path:
    return backup.folder / "dvclive"


class EpochCurves(DVCLiveCallback):
    """DVCLive's Keras callback, logging each epoch at its own number as the step.

    DVCLive's own step counts the epochs it logged, and a resumed `Live` guesses where to go on
    from the step saved in metrics.json, which reads 0 both before any epoch and after the first:
    a run killed after its first epoch would log step 0 twice. The epoch number, which Keras (and
    `distribute.fit_on_workers`) count on across a resume and across the training phases, needs no
    guess.

    The epoch is logged before it is backed up, so a run killed in between trains that epoch again
    when resumed: what was logged from the epoch a fit starts at is dropped first, so no step is
    logged twice.
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first_epoch = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._first_epoch:
            _drop_steps_from(Path(self.live.plots_dir) / "metrics", epoch)
            self._first_epoch = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.live.step = epoch
        super().on_epoch_end(epoch, logs)


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
