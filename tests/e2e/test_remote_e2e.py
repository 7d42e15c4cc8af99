"""End to end, a project shared through a DVC remote (a local folder here, as S3, GCS or SSH would
be): `dvc repro` and `dvc push` in one repository; a fresh `git clone` and `dvc pull` get a
workspace with nothing to reproduce, whose model predicts and whose metrics diff; and the model
registry (dvc.yaml `artifacts:`) serves a registered model version by name to another folder.

One tiny dataset (generated chest X-rays, TINY params), trained once for the whole module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medcls.demo.workspace import run_in as run
from medcls.pipeline.paths import DatasetPaths
from tests.support.builders import (
    generate_sources,
    reproduced_workspace,
    stages_run,
    tiny_pipeline_params,
)

pytestmark = pytest.mark.e2e

NAME = "chest_xray"
PATHS = DatasetPaths(NAME)
ALWAYS_RUN = {"validate", f"source@{NAME}"}  # always_changed stages: cheap, they retrain nothing
VERSION = f"{NAME}@v1.0.0"  # a model version as DVC's registry (GTO) tags it


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> Path:
    """The reproduced project with a default remote, committed, its model version tagged and
    everything pushed; then its cache is removed, so what a clone gets can only come from the
    remote."""
    root = tmp_path_factory.mktemp("remote")
    repo = reproduced_workspace(root, tiny_pipeline_params(generate_sources(root, (NAME,))))
    run(repo, "dvc", "remote", "add", "-d", "storage", str(root / "storage"))
    run(repo, "git", "commit", "-qam", "default remote")
    run(repo, "git", "tag", "-a", VERSION, "-m", "first model")
    run(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    return repo


@pytest.fixture(scope="module")
def clone(pushed) -> Path:
    """A fresh clone of the project with its data, models and metrics pulled from the remote."""
    clone = pushed.parent / "clone"
    run(pushed.parent, "git", "clone", "-q", str(pushed), str(clone))
    run(clone, "dvc", "pull")
    return clone


def test_training_logs_no_dvclive_experiment_warning(pushed):
    first_repro = (pushed.parent / "first_repro.log").read_text()
    assert "Running stage 'train@chest_xray'" in first_repro
    assert "save_dvc_exp" not in first_repro


def test_a_pulled_clone_has_nothing_to_reproduce(clone):
    status = json.loads(run(clone, "dvc", "status", "--json"))
    assert set(status) == ALWAYS_RUN and all(
        changes == ["always changed"] for changes in status.values()
    ), status
    assert stages_run(run(clone, "dvc", "repro")) == ALWAYS_RUN


def test_a_pulled_clone_predicts_and_diffs_its_metrics(clone, pushed):
    images = sorted((pushed.parent / "sources" / NAME).glob("chest_xray/test/*/*.jpeg"))[:3]
    command = ["medcls", "predict", "--dataset", NAME, "--json", *map(str, images)]
    predicted = json.loads(run(clone, *command))
    assert len(predicted["predictions"]) == 3 and not predicted["failures"], predicted
    diff = run(clone, "dvc", "metrics", "diff", "--all", "HEAD")
    assert str(PATHS.metrics()) in diff and "test.auc" in diff


def test_a_registered_model_is_fetched_by_name_from_another_folder(pushed, clone):
    elsewhere = pushed.parent / "elsewhere"
    elsewhere.mkdir()
    run(elsewhere, "dvc", "artifacts", "get", str(pushed), NAME)
    fetched = elsewhere / PATHS.model.name
    assert fetched.read_bytes() == (clone / PATHS.model).read_bytes()
