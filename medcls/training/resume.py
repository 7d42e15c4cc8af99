"""Training that survives interruption: the train stage's state, backed up after every epoch.

A killed run (SIGKILL mid-epoch, a preempted GPU node, Ctrl-C) started again continues from the
last finished epoch of the phase it was in; finished phases are not trained again. The backup is
kept in a scratch folder that neither git nor DVC tracks, belongs to one set of inputs (a backup
made with other params or data is discarded, never resumed) and is removed once the stage has
written its outputs. On a cluster every worker keeps its own backup, and all of them resume a phase
from the same point (`TrainingBackup.agree_with_workers`).

Layout of the folder:
    inputs.json                   the fingerprint of the inputs the backup belongs to
    <phase>/done.json, .npz       a finished phase: its summary and the weights it ended with
    <phase>/latest.json           the last finished epoch of the phase in progress, and its folder:
    <phase>/epoch-<n>/            model and optimizer weights, early stopping's state
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from medcls.params import DatasetParams, Params
from medcls.training import distribute

FINGERPRINT = "inputs.json"
FINISHED = -1  # the progress of a phase that finished


def params_fingerprint(params: Params, dataset: DatasetParams) -> dict:
    """The params a backup must have been made with to be resumed: those training reads."""
    return {
        "params": params.model_dump(mode="json", include={"seed", "lr", "fine_tune_lr"}),
        "dataset": dataset.model_dump(mode="json"),
    }


def inputs_fingerprint(params: dict, tfrecord_dir: Path) -> dict:
    """What a backup must have been made from to be resumed: the params (`params_fingerprint`) and
    the TFRecords (names and sizes)."""
    records = {path.name: path.stat().st_size for path in sorted(tfrecord_dir.iterdir())}
    return {**params, "records": records}


class TrainingBackup:
    """The backup of one training run in `folder`, for the inputs summarised by `fingerprint`."""

    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = Path(folder)
        stored = self.folder / FINGERPRINT
        self.resuming = stored.is_file() and json.loads(stored.read_text()) == fingerprint
        if not self.resuming:
            if self.folder.exists():
                print(f"discarding {self.folder}: a backup of a run with other params or data")
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            _write_text(stored, json.dumps(fingerprint, sort_keys=True))

    def progress(self, phase: str) -> int:
        """How far `phase` got: FINISHED, else the epochs finished (absolute) it backed up, or 0."""
        if (self.folder / phase / "done.json").is_file():
            return FINISHED
        latest = self.folder / phase / "latest.json"
        return json.loads(latest.read_text())["epoch"] if latest.is_file() else 0

    def agree_with_workers(self, phase: str, strategy: tf.distribute.Strategy) -> None:
        """Make every worker of `strategy` resume `phase` from the same point.

        Workers train in step, each from its own backup. One stopped after another backed up an
        epoch but before it did holds the epoch before (or the phase unfinished where the other
        finished it); resumed as they are, they would run different epochs. Each keeps only its
        last epoch, so the one point they all still have is the phase's start: then every worker
        discards its backup of the phase and trains it again from its first epoch, and says so.
        """
        progress = distribute.on_every_worker(strategy, self.progress(phase))
        if len(set(progress)) > 1:
            found = ", ".join(
                f"worker {index}: {_described(epochs)}" for index, epochs in enumerate(progress)
            )
            print(
                f"{phase}: the workers' backups disagree ({found}); every worker trains {phase} "
                "again from its first epoch"
            )
            shutil.rmtree(self.folder / phase, ignore_errors=True)

    def finished_phase(self, model: keras.Model, phase: str) -> dict | None:
        """The summary of `phase` if it finished before, with `model` set to the weights it ended
        with; None if it did not."""
        done = self.folder / phase / "done.json"
        if not done.is_file():
            return None
        with np.load(self.folder / phase / "weights.npz") as weights:
            model.set_weights([weights[f"arr_{index}"] for index in range(len(weights.files))])
        print(f"{phase}: finished before the interruption, restored from {self.folder}")
        return json.loads(done.read_text())

    def record_phase(self, model: keras.Model, phase: str, summary: dict) -> None:
        """Keep `phase`'s summary and end weights; its epoch backups are no longer needed."""
        folder = self.folder / phase
        folder.mkdir(parents=True, exist_ok=True)
        _save_arrays(folder / "weights.npz", model.get_weights())
        _write_text(folder / "done.json", json.dumps(summary))
        for epoch_folder in folder.glob("epoch-*"):
            shutil.rmtree(epoch_folder)

    def restore_epoch(self, model: keras.Model, phase: str) -> int | None:
        """Load the compiled `model`'s weights and optimizer state from the last epoch backed up in
        `phase`; return the number of epochs finished (absolute), or None without a backup."""
        latest = self.folder / phase / "latest.json"
        if not latest.is_file():
            return None
        epoch = json.loads(latest.read_text())["epoch"]
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / phase / f"epoch-{epoch}" / "model.weights.h5")
        print(f"{phase}: resuming after epoch {epoch} from {self.folder}")
        return epoch

    def epoch_callback(
        self, phase: str, early_stopping: keras.callbacks.EarlyStopping
    ) -> keras.callbacks.Callback:
        """Backs up model, optimizer and early stopping after every epoch; restores early stopping's
        state at the start of a resumed fit. Goes after `early_stopping` in the callbacks."""
        return _EpochBackup(self.folder / phase, early_stopping)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _EpochBackup(keras.callbacks.Callback):
    _STOPPING_STATE = ("wait", "best", "best_epoch")

    def __init__(self, folder: Path, early_stopping: keras.callbacks.EarlyStopping) -> None:
        super().__init__()
        self.folder, self.early_stopping = folder, early_stopping

    def on_train_begin(self, logs=None):
        latest = self.folder / "latest.json"
        if not latest.is_file():
            return
        saved = self.folder / f"epoch-{json.loads(latest.read_text())['epoch']}"
        state = json.loads((saved / "early_stopping.json").read_text())
        for name in self._STOPPING_STATE:
            setattr(self.early_stopping, name, state[name])
        best_weights = saved / "best_weights.npz"
        if best_weights.is_file():
            with np.load(best_weights) as arrays:
                self.early_stopping.best_weights = [
                    arrays[f"arr_{index}"] for index in range(len(arrays.files))
                ]

    def on_epoch_end(self, epoch, logs=None):
        """Write the epoch's folder completely, then point latest.json at it (an atomic rename), so
        a kill at any moment leaves the previous epoch's backup usable."""
        finished = epoch + 1
        saved = self.folder / f"epoch-{finished}"
        shutil.rmtree(saved, ignore_errors=True)
        saved.mkdir(parents=True)
        self.model.save_weights(saved / "model.weights.h5")
        stopping = self.early_stopping
        state = {name: _plain(getattr(stopping, name)) for name in self._STOPPING_STATE}
        _write_text(saved / "early_stopping.json", json.dumps(state))
        if stopping.best_weights is not None:
            _save_arrays(saved / "best_weights.npz", stopping.best_weights)
        _write_text(self.folder / "latest.json", json.dumps({"epoch": finished}))
        for older in self.folder.glob("epoch-*"):
            if older != saved:
                shutil.rmtree(older)


def _described(progress: int) -> str:
    if progress == FINISHED:
        return "finished"
    return f"after epoch {progress}" if progress else "not started"


def _plain(value):
    """A JSON-ready number (early stopping keeps NumPy scalars; `best` starts as None)."""
    return value if value is None else float(value) if isinstance(value, np.floating) else value


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, *arrays)
    os.replace(partial, path)


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
