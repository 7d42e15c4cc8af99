"""Params schema: the real params.yaml validates into typed params, and each kind of mistake is
named by its key, one line per problem."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medcls.params import (
    ApplicationBackbone,
    BceLoss,
    FineTuneByFraction,
    FineTuneByLayers,
    FocalLoss,
    MinSensitivity,
    ParamsError,
    PdfBlockParams,
    SavedBackbone,
    load,
    validate,
)
from medcls.pipeline.paths import DatasetPaths

PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def raw() -> dict:
    """params.yaml as plain YAML values, for mutating."""
    return YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())


def test_project_params_load_typed():
    params = load(PROJECT / "params.yaml")
    assert set(params.datasets) == {"bus_uc", "chest_xray"}
    bus_uc, chest_xray = params.datasets["bus_uc"], params.datasets["chest_xray"]
    assert (bus_uc.layout, chest_xray.layout) == ("bus_uc", "kermany")
    assert bus_uc.backbone == ApplicationBackbone(name="efficientnetb0", weights="imagenet")
    assert isinstance(bus_uc.loss, FocalLoss) and isinstance(chest_xray.loss, BceLoss)
    assert isinstance(bus_uc.head.blocks[0], PdfBlockParams)
    assert isinstance(bus_uc.train.fine_tune, FineTuneByFraction)
    assert isinstance(chest_xray.train.fine_tune, FineTuneByLayers)
    assert bus_uc.augment.saturation == 0  # grey ultrasound is unchanged by it


def test_dvc_style_exponent_is_read_as_a_float(tmp_path):
    text = (PROJECT / "params.yaml").read_text().replace("lr: 1.0e-4 ", "lr: 1e-05 ", 1)
    assert "lr: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    assert load(tmp_path / "params.yaml").lr == 1e-5


def mutated(params: dict, change) -> dict:
    params = copy.deepcopy(params)
    change(params)
    return params


def bus_uc(params: dict) -> dict:
    return params["datasets"]["bus_uc"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: bus_uc(p)["roi"].update(margn=0.2), "datasets.bus_uc.roi.margn: unknown key (typo?); allowed here: clahe, keep_aspect, margin, margin_jitter, mask_background, use_mask"),
        (lambda p: p.update(lrr=0.1), "lrr: unknown key (typo?)"),
        (lambda p: p.update(learning_rate=1e-5), "learning_rate: unknown key (typo?)"),
        (lambda p: bus_uc(p).update(trian={"epochs": 50}), "datasets.bus_uc.trian: unknown key (typo?)"),
        (lambda p: bus_uc(p)["backbone"].update(weightz="none"), "datasets.bus_uc.backbone.weightz: unknown key (typo?); allowed here: name, weights"),
        (lambda p: p.update(lr="1e-5"), "lr: expected float, got str '1e-5'"),
        (lambda p: p.update(seed=True), "seed: expected int, got bool True"),
        (lambda p: p["split"].update(test=0.3), "split: train + val + test must sum to 1, got 1.15"),
        (lambda p: p["datasets"]["chest_xray"].pop("layout"), "datasets.chest_xray: layout: required key missing; give source and layout (one source), or sources"),
        (lambda p: p["datasets"]["chest_xray"].update(layout="kaggle"), "datasets.chest_xray.layout: expected one of ['bus_uc', 'busi', 'kermany'], got str 'kaggle'"),
        (lambda p: bus_uc(p)["roi"].update(margin=-0.1), "datasets.bus_uc.roi.margin: -0.1 is outside [0, 2]"),
        (lambda p: bus_uc(p)["backbone"].update(name="vgg19"), "datasets.bus_uc.backbone: expected {name: efficientnetb0|resnet50|vgg16"),
        (lambda p: bus_uc(p)["head"]["blocks"][0]["pdf"].update(dilation_rates=[1, 2]), "datasets.bus_uc.head.blocks[0].pdf: kernel_sizes and dilation_rates"),
        (lambda p: bus_uc(p)["head"]["blocks"][1]["se"].update(ratio=0), "datasets.bus_uc.head.blocks[1].se.ratio: 0 is outside [1, inf)"),
        (lambda p: bus_uc(p)["head"]["blocks"].append({"aspp": {}}), "datasets.bus_uc.head.blocks[2]: expected {pdf: "),
        (lambda p: bus_uc(p)["head"].update(pooling="max"), "datasets.bus_uc.head.pooling: expected one of ['flatten', 'gap'], got str 'max'"),
        (lambda p: bus_uc(p)["train"]["fine_tune"].update(unfreeze_layers=4), "datasets.bus_uc.train.fine_tune: expected {epochs, patience, unfreeze_fraction"),
        (lambda p: bus_uc(p)["loss"].update(name="hinge"), "datasets.bus_uc.loss: expected {name: focal, alpha, gamma} or {name: bce}"),
        (lambda p: bus_uc(p).update(class_weight="inverse"), "datasets.bus_uc.class_weight: expected one of ['balanced', 'none']"),
        (lambda p: bus_uc(p)["augment"].update(rotate=10), "datasets.bus_uc.augment.rotate: unknown key (typo?)"),
        (lambda p: bus_uc(p)["train"].update(mixed_precision="float64"), "datasets.bus_uc.train.mixed_precision: expected one of"),
        (lambda p: bus_uc(p).update(classes=["Benign"]), "datasets.bus_uc.classes: expected 2 items, got 1"),
        (lambda p: p.update(datasets={}), "datasets: expected a non-empty mapping of named entries"),
        (lambda p: p.update(split=[0.7, 0.15, 0.15]), "split: expected a mapping, got list"),
    ],
)
def test_mistakes_are_reported_with_their_key(raw, change, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate(mutated(raw, change))


@pytest.mark.parametrize("rule", ["best", 1.5, -0.1, True, {"min_specificity": 0.9}, {"min_sensitivity": 2}])
def test_invalid_threshold_rules_are_refused_at_validation(raw, rule):
    def set_rule(p):
        bus_uc(p)["evaluate"]["threshold"] = rule

    with pytest.raises(ParamsError, match=r"^datasets\.bus_uc\.evaluate\.threshold"):
        validate(mutated(raw, set_rule))


CSV = {
    "table": "info.csv",
    "image_column": "Image",
    "label_column": "Label",
    "label_values": {"B": 0, "M": 1},
    "group_pattern": "^[A-Z]{4}",
}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["split"].update(train=0.85, test=0), "split.test: 0 is outside (0, 1]"),
        (lambda p: p["split"].update(train=0.85, val=0.0), "split.val: 0.0 is outside (0, 1]"),
        (lambda p: p.update(lr=0), "lr: 0 is outside (0, 1]"),
        (lambda p: p.update(fine_tune_lr=0.0), "fine_tune_lr: 0.0 is outside (0, 1]"),
        (lambda p: p.update(seed=2**32), "seed: 4294967296 is outside [0, 4294967295]"),
        (lambda p: p.update(seed=-1), "seed: -1 is outside [0, 4294967295]"),
        (lambda p: bus_uc(p).update(image_size=24), "datasets.bus_uc: image_size 24 is too small for this backbone, which needs at least 32 px"),
        (
            lambda p: bus_uc(p).update(image_size=16, backbone={"name": "small_cnn", "filters": [8, 8, 8, 8, 8]}),
            "datasets.bus_uc: image_size 16 is too small for this backbone, which needs at least 32 px",
        ),
        (lambda p: bus_uc(p).update(layout={"csv": CSV | {"label_values": {"B": 0, "M": 0}}}), "datasets.bus_uc.layout.csv.label_values: expected table values mapped to both 0 and 1"),
        (lambda p: bus_uc(p).update(layout={"csv": CSV | {"group_column": "Patient"}}), "datasets.bus_uc.layout.csv: give group_column or group_pattern, not both"),
        (lambda p: bus_uc(p).update(layout={"csv": CSV | {"group_pattern": "(["}}), "datasets.bus_uc.layout.csv.group_pattern: not a regular expression"),
        (lambda p: bus_uc(p)["evaluate"].update(bootstrap=5), "datasets.bus_uc.evaluate.bootstrap: expected 0 (no intervals) or at least 40"),
        (lambda p: bus_uc(p).update(classes=["benign", "Benign"]), "datasets.bus_uc.classes: expected two different class folders"),
        (lambda p: bus_uc(p)["augment"].update(brightness=[1.1, 0.9]), "datasets.bus_uc.augment.brightness: expected [low, high] with low <= high"),
        (lambda p: bus_uc(p)["augment"].update(gamma=[1.25, 0.8]), "datasets.bus_uc.augment.gamma: expected [low, high] with low <= high"),
        (lambda p: bus_uc(p)["augment"].update(gamma=[0, 1.25]), "datasets.bus_uc.augment.gamma[0]: 0 is outside (0, inf)"),
        (lambda p: bus_uc(p)["augment"].update(downscale=1.5), "datasets.bus_uc.augment.downscale: 1.5 is outside [0, 1]"),
        (lambda p: p["datasets"]["chest_xray"]["roi"].update(margin_jitter=0.1), "datasets.chest_xray.roi: margin_jitter needs use_mask: true"),
        (lambda p: bus_uc(p)["head"]["blocks"][0]["pdf"].update(kernel_sizes=[], dilation_rates=[]), "datasets.bus_uc.head.blocks[0].pdf.kernel_sizes: expected at least 1 items, got 0"),
        (lambda p: p["datasets"].update({"bus uc": bus_uc(p)}), "datasets.bus uc: expected a name of letters, digits"),
    ],
)
def test_params_that_would_fail_a_later_stage_fail_validation(raw, change, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate(mutated(raw, change))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: bus_uc(p)["evaluate"].update(tta=["flip_vertical"]), "datasets.bus_uc.evaluate.tta[0]: expected one of ['flip_horizontal', 'zoom_in'], got str 'flip_vertical'"),
        (lambda p: bus_uc(p)["evaluate"].update(tta=["zoom_in", "flip_horizontal", "zoom_in"]), "datasets.bus_uc.evaluate.tta[2]: 'zoom_in' repeats item [0]"),
        (lambda p: bus_uc(p)["evaluate"].update(external=["chest_xray", "bus_uc"]), "datasets.bus_uc.evaluate.external[1]: 'bus_uc' is not another dataset of params.yaml; defined: chest_xray"),
        (lambda p: bus_uc(p)["evaluate"].update(external=["chest_xray", "chest_xray"]), "datasets.bus_uc.evaluate.external[1]: 'chest_xray' repeats item [0]"),
        (lambda p: bus_uc(p)["evaluate"].update(external=[3]), "datasets.bus_uc.evaluate.external[0]: expected str, got int 3"),
        (lambda p: p.update(trained=["bus_uc", "chest"]), "trained[1]: 'chest' is not a dataset of params.yaml; defined: bus_uc, chest_xray"),
        (lambda p: p.update(trained=["bus_uc", "bus_uc"]), "trained[1]: 'bus_uc' repeats item [0]"),
        (lambda p: bus_uc(p)["head"]["blocks"][1]["se"].update(ratio="2"), "datasets.bus_uc.head.blocks[1].se.ratio: expected int, got str '2'"),
        (lambda p: bus_uc(p)["head"]["blocks"][0]["pdf"].update(kernel_sizes=[1, 0]), "datasets.bus_uc.head.blocks[0].pdf.kernel_sizes[1]: 0 is outside [1, inf)"),
    ],
)
def test_a_wrong_list_item_is_named_by_its_index_with_its_own_problem(raw, change, message):
    with pytest.raises(ParamsError, match=f"^{re.escape(message)}$"):
        validate(mutated(raw, change))


def test_every_problem_is_reported_on_its_own_line(raw):
    def three_mistakes(p):
        p.update(lr=0, learning_rate=1e-5)
        bus_uc(p)["roi"]["margn"] = 0.2

    with pytest.raises(ParamsError) as raised:
        validate(mutated(raw, three_mistakes))
    lines = str(raised.value).splitlines()
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"lr", "learning_rate", "datasets.bus_uc.roi.margn"}


def test_alternative_forms_are_accepted(raw):
    def use_alternatives(p):
        dataset = bus_uc(p)
        dataset["backbone"] = {"path": "weights/backbone.keras"}
        dataset["evaluate"]["threshold"] = {"min_sensitivity": 0.95}
        dataset["train"]["fine_tune"] = {"epochs": 1, "patience": 1, "unfreeze_layers": 4}
        dataset["head"]["blocks"][0]["pdf"]["reduce_to"] = 256
        p["datasets"]["chest_xray"]["evaluate"]["threshold"] = 0.3

    params = validate(mutated(raw, use_alternatives))
    dataset = params.datasets["bus_uc"]
    assert dataset.backbone == SavedBackbone(path="weights/backbone.keras", preprocessing="none")
    assert dataset.evaluate.threshold == MinSensitivity(min_sensitivity=0.95)
    assert params.datasets["chest_xray"].evaluate.threshold == 0.3


def run_stage_module(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_a_stage_stops_before_work_with_the_key_in_its_message(tmp_path):
    (tmp_path / "params.yaml").write_text(
        (PROJECT / "params.yaml").read_text().replace("margin: 0.1", "margn: 0.1", 1)
    )
    result = run_stage_module(tmp_path, "stages.download", "bus_uc")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: datasets.bus_uc.roi.margin: required key is missing",
        "error: datasets.bus_uc.roi.margn: unknown key (typo?); allowed here: clahe, keep_aspect, margin, "
        "margin_jitter, mask_background, use_mask",
    ]
    assert not (tmp_path / "data").exists()


def test_unknown_dataset_name_lists_the_defined_ones(tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    result = run_stage_module(tmp_path, "stages.download", "busii")
    assert result.returncode == 1
    assert "datasets.busii: no such dataset; defined: bus_uc, chest_xray" in result.stderr


def test_validate_stage_writes_its_constant_marker_only_for_valid_params(tmp_path):
    text = (PROJECT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("seed: 42", "seed: 42\nlearning_rate: 1e-5", 1))
    result = run_stage_module(tmp_path, "stages.validate")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: learning_rate: unknown key (typo?); allowed here: datasets, fine_tune_lr, lr, max_image_pixels, seed, split, trained, workers"
    ]
    assert not (tmp_path / "data").exists()
    (tmp_path / "params.yaml").write_text(text)
    assert run_stage_module(tmp_path, "stages.validate").returncode == 0
    marker = (tmp_path / "data" / "params.ok").read_bytes()
    (tmp_path / "params.yaml").write_text(text.replace("lr: 1.0e-4 ", "lr: 3.0e-4 ", 1))
    assert run_stage_module(tmp_path, "stages.validate").returncode == 0
    assert (tmp_path / "data" / "params.ok").read_bytes() == marker  # downstream stays cached


def test_the_first_stage_of_every_dataset_waits_for_the_validate_stage():
    stages = YAML(typ="safe", pure=True).load((PROJECT / "dvc.yaml").read_text())["stages"]
    (marker,) = [next(iter(out)) for out in stages["validate"]["outs"]]
    assert stages["validate"]["always_changed"] is True
    assert marker in stages["source"]["do"]["deps"]


def test_dataset_paths_follow_dvc_yaml():
    paths = DatasetPaths("bus_uc")
    dvc_yaml = (PROJECT / "dvc.yaml").read_text()
    for path in (paths.raw, paths.manifest, paths.rejected, paths.split, paths.summary("split")):
        assert str(path).replace("bus_uc", "${key}") in dvc_yaml, path
    evaluated = (paths.subgroups, paths.card(".md"), paths.card(".json"), paths.cases)
    for path in (paths.tfrecords, paths.predictions, paths.metrics(), paths.evaluation, paths.external, *evaluated):
        assert str(path).replace("bus_uc", "${item}") in dvc_yaml, path
    fold = paths.for_fold(3)
    for path in (paths.model, paths.dvclive / "metrics.json", paths.summary("train"),
                 fold.model, fold.dvclive / "metrics.json", fold.summary("train"),
                 fold.plots / "training_auc.json", fold.plots / "training_loss.json"):
        assert str(path).replace("bus_uc", "${item.name}").replace("3", "${item.fold}") in dvc_yaml, path
