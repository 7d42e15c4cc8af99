"""End to end: a real `dvc repro`, `dvc exp run -S lr=1e-5` and `dvc metrics/plots diff` in a
temporary git repository, on small generated datasets in all three layouts; busi and the test-only
set are each made of two sources of different layouts.

The params are the project's own params.yaml with each dataset shrunk (32 px, a small CNN, an
epoch or two), so a change to the real params schema or dvc.yaml is exercised here too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.demo import synthetic
from medcls.demo.workspace import command_environment, create_workspace
from medcls.demo.workspace import run_in as run
from medcls.evaluation.document import Evaluation, headline
from medcls.images import tfrecord_reader
from medcls.images.decode import mask_paths_of
from tests.support.builders import stages_run, tiny_pipeline_params

pytestmark = pytest.mark.e2e

DATASETS = ("bus_uc", "busi", "chest_xray")
TEST_ONLY = "bus_uc_hospital2"  # busi's model is tested on it; it has no model of its own
SECOND_SOURCE = "uc"  # busi's second source, in the bus_uc layout
# Run on every repro: validate checks the whole params file, source@ fingerprints the sources.
ALWAYS_RUN = {"validate"} | {f"source@{name}" for name in (*DATASETS, TEST_ONLY)}

def tiny_params(sources: dict[str, Path]) -> dict:
    """Every dataset trained tiny on its generated source; busi's model also tested on the same
    task from other (generated) hospitals: bus_uc and the test-only set."""
    params = tiny_pipeline_params({name: sources[name] for name in DATASETS})
    params["datasets"]["busi"]["evaluate"]["external"] = ["bus_uc", TEST_ONLY]
    params["datasets"][TEST_ONLY] = {
        "source": str(sources[TEST_ONLY]), "layout": "bus_uc", "classes": synthetic.BUS_UC_CLASSES, "test_only": True,
    }
    return params


def with_second_sources(params: dict, sources: dict[str, Path]) -> dict:
    """busi pooled with a second source of another layout (`SECOND_SOURCE`), and the test-only
    set made of two hospitals (`hospital3` in the busi layout)."""
    busi, hospitals = params["datasets"]["busi"], params["datasets"][TEST_ONLY]
    busi["sources"] = {
        "busi": {"source": busi.pop("source"), "layout": busi.pop("layout")},
        SECOND_SOURCE: {"source": str(sources[SECOND_SOURCE]), "layout": "bus_uc", "classes": hospitals["classes"], "hold_out": False},
    }
    hospitals["sources"] = {
        "h2": {"source": hospitals.pop("source"), "layout": hospitals.pop("layout")},
        "h3": {"source": str(sources["hospital3"]), "layout": "busi", "classes": busi["classes"]},
    }
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    sources = {
        "bus_uc": synthetic.make_bus_uc(root / "sources" / "bus_uc", n_per_class=16, size=64),
        "busi": synthetic.make_busi(root / "sources" / "busi", n_per_class=16, size=64),
        "chest_xray": synthetic.make_kermany(root / "sources" / "kermany", n_patients_per_class=10, size=64),
        TEST_ONLY: synthetic.make_bus_uc(root / "sources" / TEST_ONLY, n_per_class=8, size=64, seed=1),
        SECOND_SOURCE: synthetic.make_bus_uc(root / "sources" / SECOND_SOURCE, n_per_class=10, size=64, seed=2),
        "hospital3": synthetic.make_busi(root / "sources" / "hospital3", n_per_class=6, size=64, seed=3),
    }
    repo = create_workspace(root / "repo", with_second_sources(tiny_params(sources), sources), message="project")
    output = run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    (root / "first_repro.log").write_text(output)
    return repo


def test_first_repro_runs_every_stage_for_every_dataset(repo):
    expected = {f"{stage}@{name}" for stage in ("source", "download", "manifest", "split", "roi", "train", "external", "evaluate") for name in DATASETS}
    expected |= {"validate"} | {f"{stage}@{TEST_ONLY}" for stage in ("source", "download", "manifest", "split")}
    assert stages_run((repo.parent / "first_repro.log").read_text()) == expected


def test_manifest_counts_and_rejects(repo):
    for name in DATASETS:
        rows = pd.read_csv(repo / f"data/manifest/{name}.csv", keep_default_na=False)
        rejected = pd.read_csv(repo / f"data/manifest/{name}_rejected.csv", keep_default_na=False)
        summary = json.loads((repo / f"reports/{name}_manifest.json").read_text())
        assert summary["images"] == len(rows) and summary["rejected"] == len(rejected)
        assert set(rows["label"]) == {0, 1}
        assert "undecodable image" in set(rejected["reason"]), name
    busi_rows = pd.read_csv(repo / "data/manifest/busi.csv", keep_default_na=False)
    assert busi_rows["mask_paths"].str.contains(";").sum() == 1  # the extra lesion mask is merged
    for name, sources in (("busi", {"busi", SECOND_SOURCE}), (TEST_ONLY, {"h2", "h3"})):
        rows = pd.read_csv(repo / f"data/manifest/{name}.csv", keep_default_na=False)
        rejected = pd.read_csv(repo / f"data/manifest/{name}_rejected.csv", keep_default_na=False)
        assert set(rows["source"]) == sources and set(os.listdir(repo / "data/raw" / name)) == sources
        assert (rows["path"].str.split("/").str[0] == rows["source"]).all()
        assert (rows["group"].str.split("/").str[0] == rows["source"]).all()
        on_disk = {path.relative_to(repo / "data/raw" / name).as_posix() for path in (repo / "data/raw" / name).rglob("*") if path.is_file()}
        masks = {mask for paths in rows["mask_paths"] for mask in paths.split(";") if mask}
        assert on_disk == set(rows["path"]) | masks | set(rejected["path"]), name
    busi_rejects = pd.read_csv(repo / "data/manifest/busi_rejected.csv")
    assert busi_rejects["reason"].str.startswith("class not selected").any()
    assert "missing mask" in set(busi_rejects["reason"])


def test_split_has_no_patient_or_content_leakage(repo):
    for name in DATASETS:
        rows = pd.read_csv(repo / f"data/split/{name}.csv", keep_default_na=False)
        assert set(rows["split"]) == {"train", "val", "test"}
        for key in ("group", "sha256"):
            assert (rows.groupby(key)["split"].nunique() == 1).all(), (name, key)
        counts = json.loads((repo / f"reports/{name}_split.json").read_text())
        assert sum(counts[split]["total"] for split in ("train", "val", "test")) == len(rows)


def test_tfrecords_read_back_with_the_split_labels(repo):
    for name in DATASETS:
        rows = pd.read_csv(repo / f"data/split/{name}.csv", keep_default_na=False)
        for split, expected in rows.groupby("split"):
            records = list(tfrecord_reader.read_split(repo / f"data/tfrecords/{name}", split).as_numpy_iterator())
            labels = {record["id"].decode(): int(record["label"]) for record in records}
            assert labels == dict(zip(expected["path"], expected["label"]))
            assert {record["image"].shape for record in records} == {(32, 32, 3)}


def test_metrics_validate_and_plots_exist(repo):
    for name in DATASETS:
        document = json.loads((repo / f"reports/{name}.json").read_text())
        Evaluation.model_validate(document)
        assert headline(Evaluation.model_validate(document)).as_json() == json.loads((repo / f"metrics/{name}.json").read_text())
        predictions = pd.read_csv(repo / f"data/predictions/{name}.csv")
        assert document["test"]["n"] == (predictions["split"] == "test").sum()
        assert document["baseline"]["test"]["n"] == document["test"]["n"]
        assert predictions["baseline_probability"].between(0, 1).all()
        for plot in ("roi_samples.png", "training_auc.json", "training_loss.json", "gradcam.png", "roc.json", "precision_recall.json", "calibration.json", "confusion.csv"):
            assert (repo / "plots" / name / plot).stat().st_size > 0, (name, plot)
        assert not (repo / "plots" / name / "roc.png").exists()  # DVC draws the ROC from roc.json
        roc_splits = {row["split"] for row in json.loads((repo / "plots" / name / "roc.json").read_text())["roc"]}
        assert roc_splits == set(predictions["split"]), name  # one chart: val, test and every external set
        review = (repo / "reports" / f"{name}.md").read_text()
        assert f"| {document['test']['tp']} |" in review and "baseline test" in review
        assert "(../plots/" + name + "/gradcam.png)" in review
        assert ("by_source" in document) == ("## Per source" in review) == (name == "busi")
    by_source = json.loads((repo / "reports/busi.json").read_text())["by_source"]
    assert set(by_source) == {"busi", SECOND_SOURCE}
    assert sum(source["test"]["n"] for source in by_source.values()) == json.loads((repo / "metrics/busi.json").read_text())["test"]["n"]


def test_dvc_shows_only_headline_scalars(repo):
    """The declared metrics are the headline files: scalars DVC can show and diff, few enough
    for one screen (bookkeeping such as run times is in reports/, not a metric)."""
    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    files = {path: content["data"] for revision in shown.values() for path, content in revision["data"].items()}
    assert set(files) == {f"metrics/{name}.json" for name in DATASETS}
    values = [value for data in files.values() for value in flat_values(data)]
    assert all(value is None or isinstance(value, int | float) for value in values)
    assert set(files["metrics/busi.json"]["external"]) == {"bus_uc", TEST_ONLY}


def flat_values(document: dict) -> list:
    return [
        leaf
        for value in document.values()
        for leaf in (flat_values(value) if isinstance(value, dict) else [value])
    ]


def test_the_busi_model_is_tested_on_every_image_of_other_hospitals(repo):
    """External test sets: bus_uc's and the test-only set's usable images, prepared with busi's
    params, at busi's threshold."""
    document = json.loads((repo / "reports/busi.json").read_text())
    bus_uc_images = len(pd.read_csv(repo / "data/manifest/bus_uc.csv"))
    external = document["external"]["bus_uc"]
    assert external["n"] == bus_uc_images and external["images"] == "all"
    assert document["baseline"]["external"]["bus_uc"]["n"] == bus_uc_images
    assert "auc_difference" in document["versus_baseline"]["external"]["bus_uc"]
    predictions = pd.read_csv(repo / "data/predictions/busi.csv")
    rows = predictions[predictions["split"] == "external:bus_uc"]
    assert len(rows) == bus_uc_images and rows["baseline_probability"].between(0, 1).all()
    decided = (rows["probability"] >= document["threshold"]).astype(int)
    assert int((decided & rows["label"]).sum()) == external["tp"]
    assert "| bus_uc |" in (repo / "reports/busi.md").read_text()
    assert "external" not in json.loads((repo / "reports/bus_uc.json").read_text())
    hospital = document["external"][TEST_ONLY]
    assert hospital["n"] == len(pd.read_csv(repo / f"data/manifest/{TEST_ONLY}.csv"))
    assert not (repo / "models" / TEST_ONLY).exists()


def test_predict_on_test_images_reproduces_the_evaluation_probabilities(repo):
    """The predict CLI prepares raw files as the roi stage did (PNG in TFRecords is lossless)."""
    raw = Path("data/raw/bus_uc")
    evaluated = pd.read_csv(repo / "data/predictions/bus_uc.csv").query("split == 'test'")
    masks = pd.read_csv(repo / "data/split/bus_uc.csv", keep_default_na=False).set_index("path")["mask_paths"]
    images = [str(raw / image_id) for image_id in evaluated["id"]]
    mask_args = [";".join(str(raw / mask) for mask in mask_paths_of(masks[image_id])) for image_id in evaluated["id"]]
    explanation = repo.parent / "predict_explain.png"
    command = ["python", "-m", "medcls", "predict", "--dataset", "bus_uc", "--json", *images,
               "--mask", *mask_args, "--explain", str(explanation)]
    completed = subprocess.run(command, cwd=repo, env=command_environment(), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    threshold = json.loads((repo / "metrics/bus_uc.json").read_text())["test"]["threshold"]
    assert result["threshold"] == threshold and result["failures"] == []
    predicted = {Path(row["path"]).relative_to(raw).as_posix(): row for row in result["predictions"]}
    assert set(predicted) == set(evaluated["id"])
    for row in evaluated.itertuples():
        assert predicted[row.id]["probability"] == pytest.approx(row.probability, abs=1e-5), row.id
        assert predicted[row.id]["label"] == int(predicted[row.id]["probability"] >= threshold)
    assert explanation.stat().st_size > 0


def test_second_repro_runs_only_the_always_run_stages(repo):
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == ALWAYS_RUN


def test_editing_library_code_marks_the_stages_that_import_it_changed(repo):
    """Code deps are whole subpackages: a function edited in medcls/data/sources.py makes every
    download@ (and the other medcls/data stages) stale, and nothing that does not import it."""
    sources_file = repo / "medcls/data/sources.py"
    original = sources_file.read_text()
    edited = original.replace("    dest = Path(dest)\n", "    dest = Path(dest).absolute()\n", 1)
    assert edited != original
    sources_file.write_text(edited)
    try:
        stale = set(json.loads(run(repo, "dvc", "status", "--json")))
    finally:
        sources_file.write_text(original)
    assert {f"download@{name}" for name in DATASETS} <= stale
    assert not any(stage.startswith(("roi@", "train@", "evaluate@")) for stage in stale), stale
    assert set(json.loads(run(repo, "dvc", "status", "--json"))) == ALWAYS_RUN


def test_changing_the_roi_margin_reruns_only_roi_and_downstream(repo):
    params_file = repo / "params.yaml"
    params = YAML(typ="safe", pure=True).load(params_file.read_text())
    params["datasets"]["bus_uc"]["roi"]["margin"] = 0.3
    with params_file.open("w") as stream:
        YAML().dump(params, stream)
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == {"roi@bus_uc", "train@bus_uc", "external@bus_uc", "evaluate@bus_uc"} | ALWAYS_RUN
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "wider margin")
    changed = json.loads(run(repo, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json"))
    assert "test.auc" in changed["metrics/bus_uc.json"] or "test.brier" in changed["metrics/bus_uc.json"]
    assert "metrics/chest_xray.json" not in changed
    assert run(repo, "git", "ls-files", "data/predictions").split() == [f"data/predictions/{name}.csv" for name in DATASETS]
    compared = run(repo, "python", "-m", "medcls", "compare", "HEAD~1", "--resamples", "50")
    assert re.search(r"^\| bus_uc \| test \| \d+ \|", compared, re.MULTILINE)
    assert re.search(r"^\| chest_xray \| test \| .*\| identical predictions \|$", compared, re.MULTILINE)


def test_exp_run_with_a_new_learning_rate_reruns_only_training_and_evaluation(repo):
    output = run(repo, "dvc", "exp", "run", "-S", "lr=1e-5")
    assert stages_run(output) == {f"{stage}@{name}" for stage in ("train", "evaluate") for name in DATASETS} | ALWAYS_RUN
    for name in DATASETS:
        summary = json.loads((repo / f"reports/{name}_train.json").read_text())
        assert summary["phases"]["frozen"]["learning_rate"] == pytest.approx(1e-5)
    diff = run(repo, "dvc", "metrics", "diff", "HEAD", "--json")
    changed = json.loads(diff)
    assert "test.brier" in changed["metrics/bus_uc.json"]
    assert not any(path.endswith("_train.json") for path in changed)
    run(repo, "dvc", "plots", "diff", "HEAD", "-o", "plots_diff")
    assert (repo / "plots_diff" / "index.html").exists()


def test_leave_one_source_out_is_one_params_switch(repo):
    """`hold_out: true` sends a source whole to the test split; only the split reruns (download
    and manifest stay cached)."""
    output = run(repo, "dvc", "exp", "run", "-S", f"datasets.busi.sources.{SECOND_SOURCE}.hold_out=true", "split@busi")
    assert stages_run(output) == {"validate", "source@busi", "split@busi"}
    rows = pd.read_csv(repo / "data/split/busi.csv", keep_default_na=False)
    assert set(rows.loc[rows["source"] == SECOND_SOURCE, "split"]) == {"test"}
    assert set(rows.loc[rows["source"] == "busi", "split"]) == {"train", "val", "test"}
