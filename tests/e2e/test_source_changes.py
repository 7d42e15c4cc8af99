"""A changed local source re-runs download, and only what its new result changes re-runs after it.

A real `dvc repro` in a temporary git + DVC workspace, on one small generated BUSI-layout dataset,
up to the split (training is not needed to see which stages re-run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from medcls.demo import synthetic
from medcls.demo.workspace import create_workspace, run_in
from tests.support.builders import project_params, stages_run

pytestmark = pytest.mark.e2e

NAME = "busi"
TARGET = f"split@{NAME}"
ALWAYS_RUN = {"validate", f"source@{NAME}"}  # every repro: params validated, source fingerprinted


def repro(workspace: Path) -> set[str]:
    return stages_run(run_in(workspace, "dvc", "repro", TARGET))


def images_in_manifest(workspace: Path) -> int:
    return len(pd.read_csv(workspace / f"data/manifest/{NAME}.csv"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("source_changes")
    source = synthetic.make_busi(root / "source", n_per_class=8, size=32)
    params = project_params()
    dataset = params["datasets"]["bus_uc"] | {"layout": "busi", "classes": synthetic.BUSI_CLASSES}
    params["datasets"], params["trained"] = {NAME: dataset | {"source": str(source)}}, [NAME]
    params["workers"] = 1
    workspace = create_workspace(root / "workspace", params)
    run_in(workspace, "dvc", "config", "core.analytics", "false")
    assert repro(workspace) == {"validate"} | {f"{stage}@{NAME}" for stage in ("source", "download", "manifest", "split")}
    return workspace, source


def test_an_unchanged_source_reruns_only_its_fingerprint(workspace) -> None:
    assert repro(workspace[0]) == ALWAYS_RUN


def test_a_touched_but_identical_source_leaves_everything_after_download_cached(workspace) -> None:
    repo, source = workspace
    touched = source / synthetic.BUSI_ROOT / "benign" / "benign (3).png"
    later = touched.stat().st_mtime_ns + 10**9
    os.utime(touched, ns=(later, later))
    assert repro(repo) == ALWAYS_RUN | {f"download@{NAME}"}


def test_an_image_added_to_the_source_reaches_the_manifest_and_split(workspace) -> None:
    repo, source = workspace
    before = images_in_manifest(repo)
    benign = source / synthetic.BUSI_ROOT / "benign"
    for suffix in ("", "_mask"):
        shutil.copy(benign / f"benign (3){suffix}.png", benign / f"benign (100){suffix}.png")
    assert repro(repo) == {"validate"} | {f"{stage}@{NAME}" for stage in ("source", "download", "manifest", "split")}
    assert images_in_manifest(repo) == before + 1
    assert repro(repo) == ALWAYS_RUN


def test_a_source_gone_from_this_machine_keeps_the_data_fetched_from_it(workspace, tmp_path) -> None:
    repo, source = workspace
    moved = tmp_path / "elsewhere"
    source.rename(moved)
    try:
        output = run_in(repo, "dvc", "repro", TARGET)
    finally:
        moved.rename(source)
    assert stages_run(output) == ALWAYS_RUN
    assert f"warning: {NAME}: source {str(source)!r} not found here" in output
