"""An invalid params.yaml stops every `dvc repro` and `dvc exp run`, even one that would run no stage:
the always-run `validate` stage comes first. Valid params rerun nothing downstream of it (but the
always-run fingerprint of the source).

A real `dvc` in a temporary git repository, on the download stage of one small generated dataset.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medcls.demo import synthetic
from medcls.demo.workspace import command_environment, create_workspace
from medcls.demo.workspace import run_in as run
from tests.support.builders import project_params, stages_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("params")
    source = synthetic.make_bus_uc(root / "source", n_per_class=4, size=32)
    params = project_params()
    params["datasets"] = {"bus_uc": params["datasets"]["bus_uc"] | {"source": str(source)}}
    params["trained"] = ["bus_uc"]
    repo = create_workspace(root / "repo", params, message="project")
    first_run = stages_run(run(repo, "dvc", "repro", "download@bus_uc"))
    assert first_run == {"validate", "source@bus_uc", "download@bus_uc"}
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "downloaded")
    return repo


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dvc", *args], cwd=repo, env=command_environment(), capture_output=True, text=True
    )


def test_valid_params_rerun_nothing_but_validate(repo):
    result = dvc(repo, "repro", "download@bus_uc")
    assert result.returncode == 0, result.stderr
    assert stages_run(result.stdout) == {"validate", "source@bus_uc"}
    assert "Stage 'download@bus_uc' didn't change, skipping" in result.stdout


def misspell(repo: Path, where: str) -> None:
    """Add a key no stage tracks: a top-level `learning_rate`, or a dataset's `trian` section."""
    params_file = repo / "params.yaml"
    params = YAML(typ="safe", pure=True).load(params_file.read_text())
    if where == "top":
        params["learning_rate"] = 1e-5
    else:
        params["datasets"]["bus_uc"]["trian"] = {"epochs": 50}
    with params_file.open("w") as stream:
        YAML().dump(params, stream)


@pytest.mark.parametrize(
    "command, where, error",
    [
        (
            ("repro",),
            "top",
            "error: learning_rate: unknown key (typo?); allowed here: datasets, fine_tune_lr, lr, max_image_pixels, seed, split, trained, workers",
        ),
        (
            ("repro", "download@bus_uc"),
            "dataset",
            "error: datasets.bus_uc.trian: unknown key (typo?)",
        ),
        (("exp", "run", "download@bus_uc"), "top", "error: learning_rate: unknown key (typo?)"),
    ],
)
def test_a_key_no_stage_tracks_stops_the_run(repo, command, where, error):
    misspell(repo, where)
    try:
        result = dvc(repo, *command)
    finally:
        run(repo, "git", "checkout", "--", "params.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(error), output
    assert stages_run(output) == {"validate"}
