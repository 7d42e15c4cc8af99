"""Faults at the machine's edges: a full disk (simulated by a file-size limit, which makes writes
fail with EFBIG as a full disk fails them with ENOSPC), a read-only workspace, and a source on a
path with spaces and non-ASCII characters. Each failure is one error line, leaves no partial
output, and `dvc repro` recovers once the fault is gone. Runs the real stages and DVC."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment, create_workspace, run_in
from tests.support.builders import NAME, one_dataset_params, stages_run, write_params

pytestmark = pytest.mark.e2e

FILE_SIZE_LIMIT = 16 * 1024  # bytes: above every generated image, below a TFRecord shard


def limit_file_size() -> None:
    """In the child: writes beyond the limit fail with EFBIG instead of killing it (SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def run(workspace: Path, *command: str, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=workspace, env=command_environment() | {"PYTHONPATH": str(PROJECT)},
        capture_output=True, text=True, preexec_fn=preexec_fn,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A committed workspace of one small chest X-ray dataset whose source holds a file above the
    file-size limit (a scanner export beside the images), not yet run."""
    root = tmp_path_factory.mktemp("edges")
    source = synthetic.make_kermany(root / "source", n_patients_per_class=6, size=48)
    (source / "export.bin").write_bytes(os.urandom(2 * FILE_SIZE_LIMIT))
    return create_workspace(root / "repo", one_dataset_params(NAME, source=str(source)))


def test_a_full_disk_during_download_roi_and_train_is_one_line_and_dvc_repro_recovers(workspace):
    # The stages run alone under the limit: DVC's own database would fail first.
    failed = run(workspace, sys.executable, "-m", "stages.download", NAME, preexec_fn=limit_file_size)
    assert_one_error_line(
        failed, "no space left writing data/raw/", "export.bin (File too large)",
        "free space and run dvc repro again",
    )
    assert not (workspace / "data/raw").exists() or not any((workspace / "data/raw").iterdir())

    assert f"split@{NAME}" in stages_run(run_in(workspace, "dvc", "repro", f"split@{NAME}"))
    assert (workspace / f"data/raw/{NAME}/export.bin").stat().st_size == 2 * FILE_SIZE_LIMIT

    failed = run(workspace, sys.executable, "-m", "stages.roi", NAME, preexec_fn=limit_file_size)
    assert_one_error_line(failed, f"no space left writing data/tfrecords/.{NAME}.partial/", "File too large")
    assert sorted(path.name for path in (workspace / "data/tfrecords").iterdir()) == []
    assert f"roi@{NAME}" in stages_run(run_in(workspace, "dvc", "repro", f"roi@{NAME}"))

    failed = run(workspace, sys.executable, "-m", "stages.train", NAME, preexec_fn=limit_file_size)
    assert_one_error_line(failed, "no space left writing", "free space and run dvc repro again")
    assert f"train@{NAME}" in stages_run(run_in(workspace, "dvc", "repro", f"train@{NAME}"))


# Runs a command with its working folder mounted read-only, in a private mount namespace (root
# writes through any permission bit; a read-only mount refuses everyone, as a read-only disk does).
READ_ONLY_HERE = [
    "unshare", "--mount", "sh", "-c",
    'mount --bind . . && mount -o remount,ro,bind . . && cd "$PWD" && exec "$@"', "sh",
]


def read_only_mounts_work(folder: Path) -> bool:
    probe = subprocess.run([*READ_ONLY_HERE, "touch", "probe"], cwd=folder, capture_output=True, text=True)
    return shutil.which("unshare") is not None and "Read-only file system" in probe.stderr


@pytest.mark.parametrize("stage", ["validate", "download"])
def test_a_read_only_workspace_is_one_line(tmp_path, stage):
    source = synthetic.make_kermany(tmp_path / "source", n_patients_per_class=2, size=32)
    workspace = tmp_path / "workspace"
    write_params(workspace, one_dataset_params(NAME, source=str(source)))
    if not read_only_mounts_work(workspace):
        pytest.skip("this machine cannot mount a folder read-only (needs unshare and mount rights)")
    arguments = ["stages.validate"] if stage == "validate" else ["stages.download", NAME]
    failed = run(workspace, *READ_ONLY_HERE, sys.executable, "-m", *arguments)
    line = assert_one_error_line(failed, "cannot write data", "(Read-only file system)")
    assert line.endswith("the workspace must be writable; make it so and run dvc repro again")
    assert list(workspace.iterdir()) == [workspace / "params.yaml"]


def test_a_source_on_a_path_with_spaces_and_accents_runs_end_to_end(tmp_path):
    source = synthetic.make_kermany(
        tmp_path / "données patients" / "radiographies thorax ñ", n_patients_per_class=6, size=48
    )
    workspace = create_workspace(tmp_path / "dépôt de travail", one_dataset_params(NAME, source=str(source)))
    output = run_in(workspace, "dvc", "repro", f"evaluate@{NAME}")
    assert {f"download@{NAME}", f"manifest@{NAME}", f"evaluate@{NAME}"} <= stages_run(output)
