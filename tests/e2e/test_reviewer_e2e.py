"""End to end with the offline profile's shape: busi by image size and tested on a BUS-UCLM-like
csv set by its INFO.csv columns, chest X-rays by pneumonia type from the file names; each dataset
shrunk and pointed at generated images. A real `dvc repro` writes the subgroups, the case thumbnails
and the model cards; `medcls compare` pairs them; a column that is not there is one error line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment, create_workspace, run_in
from medcls.evaluation import cases
from medcls.pipeline.paths import DatasetPaths
from tests.support.builders import TINY, write_params

pytestmark = pytest.mark.e2e

TRAINED = ("busi", "chest_xray")
EXTERNAL = "bus_uclm_dev"


def profile_params(root: Path) -> dict:
    """profiles/offline-shared.yaml with busi, chest_xray and bus_uclm_dev on generated sources,
    tiny, and every subgroup large enough to score."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "profiles/offline-shared.yaml").read_text())
    sources = {
        "busi": synthetic.make_busi(root / "busi", n_per_class=12, size=64),
        "chest_xray": synthetic.make_kermany(root / "kermany", n_patients_per_class=10, size=64),
        EXTERNAL: synthetic.make_bus_uclm(root / "uclm", n_patients=12, images_per_patient=3),
    }
    params["datasets"] = {name: params["datasets"][name] for name in sources}
    params |= {"trained": list(TRAINED), "workers": 2}
    for name, folder in sources.items():
        params["datasets"][name]["source"] = str(folder)
    for name in TRAINED:
        dataset = params["datasets"][name]
        evaluate = dataset["evaluate"] | {
            "bootstrap": 50,
            "subgroup_min_size": {"images": 2, "per_class": 1},
        }
        dataset.update(copy.deepcopy(TINY), evaluate=evaluate)
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reviewer")
    repo = create_workspace(root / "repo", profile_params(root / "sources"), message="project")
    run_in(repo, "dvc", "repro")
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", "first run")
    return repo


def card_of(repo: Path, name: str) -> dict:
    return json.loads((repo / DatasetPaths(name).card(".json")).read_text())


def test_subgroups_of_the_test_split_and_the_external_set(repo):
    busi = card_of(repo, "busi")["evaluation"]["subgroups"]
    assert set(busi) == {"test", f"external:{EXTERNAL}"}
    assert list(busi["test"]["size"]) == ["<240 px"]  # generated images are 64 px
    external = busi[f"external:{EXTERNAL}"]
    assert set(external) == {"Resolution", "Doppler", "Marks", "Combined"}
    assert list(external["Doppler"]) == ["No", "Yes", "unknown"]  # empty cells: unknown
    assert sum(group["n"] for group in external["Doppler"].values()) == 36
    chest = card_of(repo, "chest_xray")["evaluation"]["subgroups"]["test"]["pneumonia_type"]
    assert set(chest) == {"bacteria", "virus", "unknown"}
    assert chest["bacteria"]["scored_with"] == "every negative image"


def test_the_card_quotes_the_metrics_and_maps_claim_items(repo):
    for name in TRAINED:
        written = card_of(repo, name)
        assert written["evaluation"]["headline"] == json.loads((repo / f"metrics/{name}.json").read_text())
        assert written["data"]["rejected"] == len(pd.read_csv(repo / f"data/manifest/{name}_rejected.csv"))
        assert written["provenance"]["dvc_lock"][f"train@{name}"]
        text = (repo / DatasetPaths(name).card(".md")).read_text()
        assert "## Only the authors can answer" in text and "CLAIM 2024 items 3, 41." in text


def test_the_evaluation_report_and_headline_hold_the_subgroups(repo):
    for name in TRAINED:
        evaluation = json.loads((repo / f"reports/{name}.json").read_text())
        assert evaluation["subgroups"].keys() == evaluation["baseline"]["subgroups"].keys()
        headline = json.loads((repo / f"metrics/{name}.json").read_text())
        groups = evaluation["subgroups"]["test"]
        aucs = [g["auc"] for by_value in groups.values() for g in by_value.values() if g.get("auc") is not None]
        assert headline["test"]["worst_subgroup_auc"] == (min(aucs) if aucs else None)
        report = (repo / f"reports/{name}.md").read_text()
        assert "## Subgroups" in report and "## Single cases" in report
        thumbnail = cases.thumbnail_name(evaluation["cases"]["borderline"][0]["id"])
        assert f"(../plots/{name}/cases/{thumbnail})" in report
    external = json.loads((repo / "metrics/busi.json").read_text())["external"][EXTERNAL]
    assert "worst_subgroup_auc" in external


def test_case_thumbnails_and_subgroup_values_are_written(repo):
    for name in TRAINED:
        paths = DatasetPaths(name)
        review = card_of(repo, name)["evaluation"]["cases"]
        shown = {case["id"] for case in review["confident_errors"] + review["borderline"]}
        assert {path.name for path in (repo / paths.cases).iterdir()} == {
            cases.thumbnail_name(key) for key in shown
        }
        values = pd.read_csv(repo / paths.subgroups, keep_default_na=False)
        predictions = pd.read_csv(repo / paths.predictions)
        scored = predictions[predictions["split"].isin(set(values["split"]))]
        assert sorted(values["id"]) == sorted(scored["id"])


def test_compare_pairs_the_subgroups_and_lists_no_changed_decision(repo):
    result = subprocess.run(
        [sys.executable, "-m", "medcls", "compare", "HEAD", "--resamples", "40"],
        cwd=repo, env=command_environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "| chest_xray | test | pneumonia_type = bacteria (with every negative image) |" in result.stdout
    assert f"| busi | external:{EXTERNAL} | Doppler = unknown |" in result.stdout
    assert "Decisions that changed (0 images):" in result.stdout


def test_a_subgroup_column_that_is_not_there_is_one_error_line(repo, tmp_path):
    params = YAML(typ="safe", pure=True).load((repo / "params.yaml").read_text())
    params["datasets"]["busi"]["evaluate"]["external_subgroups"] = {EXTERNAL: ["Scanner"]}
    write_params(repo, params)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "stages.evaluate", "busi"],
            cwd=repo, env=command_environment(), capture_output=True, text=True,
        )  # fmt: skip
    finally:
        run_in(repo, "git", "checkout", "--", "params.yaml")
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"error: datasets.busi.evaluate.external_subgroups.{EXTERNAL}[0]: no column 'Scanner' in "
        f"data/external/busi/{EXTERNAL}.csv"
    )
    assert "Traceback" not in result.stderr
