"""Datasets of several sources (`sources: {<name>: {source, layout, classes, hold_out}}`): params,
manifest (source column, groups unique per source, every raw file accounted for), split (stratified
by class and source, held-out sources in test), source and download stages, per-source metrics."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.data.manifest import (
    CONFLICTING_LABELS,
    SourceReading,
    build_sources_manifest,
    summarize,
)
from medcls.data.splitting import cross_validation_folds, grouped_stratified_split, split_counts
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT
from medcls.evaluation import report, splits
from medcls.evaluation.document import Evaluation
from medcls.params import ParamsError, validate
from medcls.pipeline.paths import DatasetPaths
from tests.support.splitting import FRACTIONS, synthetic_manifest

CLASSES = ["benign", "malignant"]


# --- params -------------------------------------------------------------------------------------


@pytest.fixture
def raw_params() -> dict:
    """The project's params with bus_uc made of two sources: BUS_UC and BUSI."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    bus_uc = params["datasets"]["bus_uc"]
    bus_uc["sources"] = {
        "bus_uc": {"source": bus_uc.pop("source"), "layout": bus_uc.pop("layout"), "classes": ["Benign", "Malignant"]},
        "busi": {"source": "/data/busi", "layout": "busi"},
    }
    bus_uc["classes"] = CLASSES
    return params


def test_sources_are_named_with_their_classes_filled_in(raw_params):
    dataset = validate(raw_params).datasets["bus_uc"]
    named = dataset.named_sources
    assert {name: source.classes for name, source in named.items()} == {
        "bus_uc": ["Benign", "Malignant"],
        "busi": CLASSES,
    }
    assert [source.folder for source in named.values()] == ["bus_uc", "busi"]
    assert named["busi"].key == "datasets.bus_uc.sources.busi.source"


def test_one_source_is_named_after_its_dataset_and_read_from_the_raw_folder_itself():
    single = validate(YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text()))
    chest = single.datasets["chest_xray"]
    assert list(chest.named_sources) == ["chest_xray"]
    only = chest.named_sources["chest_xray"]
    assert (only.folder, only.key, only.hold_out) == ("", "datasets.chest_xray.source", False)
    assert (only.source, only.layout, only.classes) == (chest.source, chest.layout, chest.classes)


def bus_uc(params: dict) -> dict:
    return params["datasets"]["bus_uc"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(source="/x"), "datasets.bus_uc: give source and layout (one source) or sources (several), not both; found source beside sources"),
        (lambda d: d.update(sources={}), "datasets.bus_uc.sources: expected a non-empty mapping of named entries"),
        (lambda d: d.pop("sources"), "datasets.bus_uc: source and layout: required key missing; give source and layout (one source), or sources"),
        (lambda d: d["sources"].update({"bad name": d["sources"]["busi"]}), "datasets.bus_uc.sources.bad name: expected a name of letters, digits"),
        (lambda d: d["sources"]["busi"].update(layuot="busi"), "datasets.bus_uc.sources.busi.layuot: unknown key (typo?); allowed here: classes, hold_out, layout, source"),
        (lambda d: d["sources"]["busi"].pop("layout"), "datasets.bus_uc.sources.busi.layout: required key is missing"),
        (lambda d: d["sources"]["busi"].update(hold_out="yes"), "datasets.bus_uc.sources.busi.hold_out: expected bool, got str 'yes'"),
        (lambda d: d["sources"]["busi"].update(classes=["a", "A"]), "datasets.bus_uc.sources.busi.classes: expected two different class folders"),
        (lambda d: d["sources"]["busi"].update(classes=["a"]), "datasets.bus_uc.sources.busi.classes: expected 2 items, got 1"),
        (
            lambda d: [source.update(hold_out=True) for source in d["sources"].values()],
            "datasets.bus_uc: every source has hold_out: true, which leaves nothing to train on",
        ),
    ],
)
def test_mistakes_in_sources_are_reported_with_their_key(raw_params, change, message):
    change(bus_uc(raw_params))
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate(raw_params)


def test_a_test_only_dataset_may_hold_out_every_source(raw_params):
    params = copy.deepcopy(raw_params)
    external = {
        "sources": copy.deepcopy(bus_uc(params)["sources"]),
        "classes": CLASSES,
        "test_only": True,
    }
    for source in external["sources"].values():
        source["hold_out"] = True
    params["datasets"]["hospitals"] = external
    assert validate(params).datasets["hospitals"].held_out() == ["bus_uc", "busi"]


# --- manifest -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_kermany_sources(tmp_path_factory) -> Path:
    """Two chest X-ray hospitals whose generators number patients alike (person1 in both), and
    `a`'s image that it holds twice (KERMANY_DUPLICATE) filed again in `b` under the other class."""
    raw = tmp_path_factory.mktemp("raw")
    synthetic.make_kermany(raw / "a", n_patients_per_class=6, seed=0)
    synthetic.make_kermany(raw / "b", n_patients_per_class=6, seed=1)
    shutil.copy(raw / "a" / synthetic.KERMANY_DUPLICATE[0], raw / "b" / synthetic.KERMANY_ROOT / "train" / "PNEUMONIA" / "person99_virus_1.jpeg")
    return raw


@pytest.fixture(scope="module")
def two_source_manifest(two_kermany_sources) -> tuple[pd.DataFrame, pd.DataFrame]:
    readings = {
        "a": SourceReading("a", "kermany", ["normal", "pneumonia"]),
        "b": SourceReading("b", "kermany", synthetic.KERMANY_CLASSES),
    }
    return build_sources_manifest(two_kermany_sources, readings, synthetic.KERMANY_CLASSES, workers=1)


def test_every_raw_file_of_every_source_is_accounted_for_once(two_kermany_sources, two_source_manifest):
    manifest, rejected = two_source_manifest
    on_disk = {path.relative_to(two_kermany_sources).as_posix() for path in two_kermany_sources.rglob("*") if path.is_file()}
    listed = list(manifest["path"]) + list(rejected["path"])
    assert sorted(listed) == sorted(on_disk)
    for table in (manifest, rejected):
        assert (table["path"].str.split("/").str[0] == table["source"]).all()
    assert set(manifest["source"]) == {"a", "b"}
    assert set(manifest["class_name"]) == set(synthetic.KERMANY_CLASSES)  # the dataset's names, not a's
    per_source = summarize(manifest, rejected)["per_source"]
    assert {source: sum(counts.values()) for source, counts in per_source.items()} == manifest["source"].value_counts().to_dict()


def test_the_same_patient_id_in_two_sources_is_two_groups(two_source_manifest):
    manifest, _ = two_source_manifest
    assert (manifest["group"].str.split("/").str[0] == manifest["source"]).all()
    patients = manifest["group"].str.split("/", n=1).str[1]
    shared = set(patients[manifest["source"] == "a"]) & set(patients[manifest["source"] == "b"])
    assert "person1" in shared
    assert manifest.groupby("group")["source"].nunique().max() == 1


def test_identical_pixels_under_both_classes_in_two_sources_are_rejected_naming_them(two_source_manifest):
    _, rejected = two_source_manifest
    conflicting = rejected[rejected["reason"].str.startswith(CONFLICTING_LABELS)]
    assert sorted(conflicting["path"]) == sorted(
        [f"a/{path}" for path in synthetic.KERMANY_DUPLICATE]
        + [f"b/{synthetic.KERMANY_ROOT}/train/PNEUMONIA/person99_virus_1.jpeg"]
    )
    assert set(conflicting["reason"]) == {f"{CONFLICTING_LABELS} (a: NORMAL; b: PNEUMONIA)"}


# --- split --------------------------------------------------------------------------------------


def two_source_rows(seed: int = 1) -> pd.DataFrame:
    """Two sources of very different class balance (30 % and 70 % positive), a few identical
    pictures within each and one shared by both."""
    first, second = synthetic_manifest(300, seed), synthetic_manifest(300, seed + 1)
    second["label"] = 1 - second["label"]
    second["class_name"] = np.where(second["label"] == 1, "pos", "neg")
    rows = pd.concat([first.assign(source="a"), second.assign(source="b")], ignore_index=True)
    rows["group"] = rows["source"] + "/" + rows["group"]
    rows["path"] = rows["source"] + "/" + rows["path"]
    rows["sha256"] = rows["source"] + "/" + rows["sha256"]
    rows.loc[rows.index[-1], "sha256"] = rows.loc[0, "sha256"]  # one picture in both sources
    return rows


def test_the_split_keeps_every_class_of_every_source_in_proportion():
    rows = two_source_rows()
    split = grouped_stratified_split(rows, FRACTIONS, seed=0)
    shares = split.groupby([rows["source"], rows["label"]]).value_counts(normalize=True)
    for (source, label, name), share in shares.items():
        assert share == pytest.approx(FRACTIONS[name], abs=0.04), (source, label, name)
    for key in ("group", "sha256"):
        assert split.groupby(rows[key]).nunique().max() == 1
    counts = split_counts(rows.assign(split=split))
    assert set(counts["by_source"]) == {"a", "b"}
    assert counts["by_source"]["b"]["test"]["total"] == ((rows["source"] == "b") & (split == "test")).sum()


def test_a_held_out_source_goes_to_test_whole_with_what_it_shares():
    rows = two_source_rows()
    split = grouped_stratified_split(rows, FRACTIONS, seed=0, held_out=["b"])
    assert (split[rows["source"] == "b"] == "test").all()
    assert split[0] == "test"  # a's picture that b holds too
    kept = rows["source"] == "a"
    shares = split[kept & (rows.index != 0)].groupby(rows["label"]).value_counts(normalize=True)
    for (label, name), share in shares.items():
        assert share == pytest.approx(FRACTIONS[name], abs=0.04), (label, name)
    folds = cross_validation_folds(rows, split, 3, seed=0)
    assert (folds[rows["source"] == "b"] == -1).all()


def test_holding_out_needs_a_test_split():
    with pytest.raises(ValueError, match=r"held out for a test split, but it is empty"):
        grouped_stratified_split(two_source_rows(), {"train": 0.8, "val": 0.2, "test": 0.0}, 0, held_out=["b"])


# The split of `synthetic_manifest()` (seed 0) and its 5 folds as computed before datasets had
# several sources (commit 5ac2330): a single-source dataset must keep its split exactly.
SPLIT_BEFORE_SOURCES = "d59175d361e41344f5930fee873c7fd7768778652761ebb91455b5758e2c2dc1"
FOLDS_BEFORE_SOURCES = "7a5047b60bd453992c3c916a0169af29a546c478fda62107b5e11cf326873977"


@pytest.mark.parametrize("source", [None, "chest_xray"])
def test_a_single_source_dataset_keeps_the_split_it_had(source):
    rows = synthetic_manifest()
    if source:
        rows["source"] = source
    split = grouped_stratified_split(rows, FRACTIONS, seed=0)
    folds = cross_validation_folds(rows, split, 5, seed=0)
    assert hashlib.sha256("".join(split).encode()).hexdigest() == SPLIT_BEFORE_SOURCES
    assert hashlib.sha256(",".join(map(str, folds)).encode()).hexdigest() == FOLDS_BEFORE_SOURCES


# --- source and download stages -----------------------------------------------------------------


def test_source_and_download_stages_fetch_each_source_into_its_folder(tmp_path, raw_params, monkeypatch):
    from stages import download, source

    busi = synthetic.make_busi(tmp_path / "sources" / "busi", n_per_class=2)
    uc = synthetic.make_bus_uc(tmp_path / "sources" / "uc", n_per_class=2)
    dataset = bus_uc(raw_params)
    dataset["sources"]["bus_uc"]["source"] = str(uc)
    dataset["sources"]["busi"].update(source=str(busi), hold_out=True)
    params = validate(raw_params)
    monkeypatch.chdir(tmp_path)
    paths = DatasetPaths("bus_uc")
    source.record("bus_uc", params, params.datasets["bus_uc"], paths)
    description = {part: json.loads(paths.source_record(part).read_text()) for part in ("fetch", "read", "hold_out")}
    assert set(description["fetch"]) == {"bus_uc", "busi"} and description["hold_out"] == ["busi"]
    assert description["fetch"]["busi"]["source"] == str(busi) and description["fetch"]["busi"]["files"] > 0
    assert description["read"]["bus_uc"] == {"folder": "bus_uc", "layout": "bus_uc", "classes": ["Benign", "Malignant"]}
    download.download("bus_uc", params, params.datasets["bus_uc"], paths)
    for name, copied in (("bus_uc", uc), ("busi", busi)):
        assert sorted(os.listdir(paths.raw / name)) == sorted(os.listdir(copied))
    assert sorted(os.listdir(paths.raw)) == ["bus_uc", "busi"]


# --- per-source metrics -------------------------------------------------------------------------


def test_per_source_metrics_validate_and_reach_the_report(tmp_path):
    rng = np.random.default_rng(0)
    n = 160
    predictions = pd.DataFrame(
        {
            "id": [f"{'ab'[i % 2]}/img{i}.png" for i in range(n)],
            "split": np.where(np.arange(n) < n // 2, "val", "test"),
            "label": rng.integers(0, 2, n),
        }
    )
    predictions["probability"] = np.clip(0.3 * predictions["label"] + rng.random(n) * 0.7, 0, 1)
    source_of = pd.Series(predictions["id"].str[0].to_numpy(), index=predictions["id"])
    source_of[source_of.index.str.startswith("b") & (predictions.set_index("id")["split"] == "val")] = "c"
    document = splits.evaluate_predictions(predictions, rule="youden", n_bootstrap=50, seed=0)
    document["by_source"] = splits.by_source(predictions, source_of, document["threshold"], n_bootstrap=50, seed=0)
    Evaluation.model_validate(document)
    assert set(document["by_source"]) == {"a", "b", "c"}
    assert set(document["by_source"]["b"]) == {"test"} and set(document["by_source"]["c"]) == {"val"}
    assert sum(document["by_source"][s]["test"]["n"] for s in ("a", "b")) == document["test"]["n"]
    broken = copy.deepcopy(document)
    broken["by_source"]["a"]["train"] = broken["by_source"]["a"]["test"]
    with pytest.raises(ValueError, match=r"by_source\.a\.train"):
        Evaluation.model_validate(broken)
    figure = tmp_path / "roc.png"
    figure.write_bytes(b"png")
    out = tmp_path / "report.md"
    report.write_report(document, CLASSES, "mixed", out, [figure])
    text = out.read_text()
    assert "## Per source" in text
    a_test = document["by_source"]["a"]["test"]
    assert re.search(rf"^\| a \| test \| {a_test['n']} \| {a_test['auc']:.3f} ", text, re.MULTILINE)
