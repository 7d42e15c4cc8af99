"""An interrupted roi stage: its partial output is refused by the next stage, and `dvc repro`
recovers. Runs the real stages and DVC in a throw-away workspace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medcls.demo import synthetic
from medcls.demo.workspace import command_environment, create_workspace, run_in
from medcls.images import tfrecord_reader
from tests.support.builders import one_dataset_params

pytestmark = pytest.mark.e2e

NAME = "chest_xray"


@pytest.fixture
def split_workspace(tmp_path) -> Path:
    """A workspace with one small dataset, run up to its split; one worker, so roi runs in-process."""
    source = synthetic.make_kermany(tmp_path / "source", n_patients_per_class=6, size=48)
    workspace = create_workspace(tmp_path / "repo", one_dataset_params(NAME, source=str(source)))
    run_in(workspace, "dvc", "repro", f"split@{NAME}")
    return workspace


def stage(workspace: Path, name: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}", NAME],
        cwd=workspace,
        env=command_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def kill_roi_while_it_reads(workspace: Path, image: Path) -> None:
    """Replace `image` by a named pipe, start roi, SIGKILL it once it blocks opening the pipe
    (every record before that image is written by then), and put the image back."""
    content = image.read_bytes()
    image.unlink()
    os.mkfifo(image)
    roi = stage(workspace, "roi")
    deadline = time.monotonic() + 120
    while True:  # opening the write end without blocking succeeds once roi has opened it to read
        try:
            pipe = os.open(image, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert roi.poll() is None and time.monotonic() < deadline, roi.communicate()
            time.sleep(0.1)
    roi.send_signal(signal.SIGKILL)
    roi.wait()
    os.close(pipe)
    image.unlink()
    image.write_bytes(content)


def test_train_refuses_an_interrupted_roi_output_and_dvc_repro_recovers(split_workspace):
    workspace = split_workspace
    rows = pd.read_csv(workspace / f"data/split/{NAME}.csv", keep_default_na=False)
    last = rows.sort_values(["split", "sha256", "path"]).iloc[-1]["path"]  # roi's writing order
    kill_roi_while_it_reads(workspace, workspace / f"data/raw/{NAME}" / last)
    assert list((workspace / "data/tfrecords").rglob("*.tfrecord")), "killed before any shard"

    train = stage(workspace, "train")
    _, stderr = train.communicate(timeout=300)
    assert train.returncode != 0, "trained on a partial roi output"
    assert stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in stderr
    assert f"run `dvc repro roi@{NAME}`" in stderr

    output = run_in(workspace, "dvc", "repro", f"train@{NAME}")
    assert f"Running stage 'roi@{NAME}'" in output and f"Running stage 'train@{NAME}'" in output
    for split, count in rows["split"].value_counts().items():
        assert len(tfrecord_reader.read_labels(workspace / f"data/tfrecords/{NAME}", split)) == count
    assert (workspace / f"models/{NAME}/model.keras").is_file()
