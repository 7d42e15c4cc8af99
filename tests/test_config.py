"""Params schema: the real params.yaml validates, and each kind of mistake is named by its key."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medcls.pipeline import config
from medcls.pipeline.paths import DatasetPaths

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params() -> dict:
    return config.load(PROJECT / "params.yaml")


def test_project_params_are_valid(params):
    assert set(params["datasets"]) == {"bus_uc", "chest_xray"}
    assert params["datasets"]["bus_uc"]["layout"] == "bus_uc"
    assert params["datasets"]["chest_xray"]["layout"] == "kermany"


def test_dvc_style_exponent_is_read_as_a_float(tmp_path, params):
    text = (PROJECT / "params.yaml").read_text().replace("lr: 1.0e-4 ", "lr: 1e-05 ", 1)
    assert "lr: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    assert config.load(tmp_path / "params.yaml")["lr"] == 1e-5


def mutated(params: dict, change) -> dict:
    params = copy.deepcopy(params)
    change(params)
    return params


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["datasets"]["bus_uc"]["roi"].update(margn=0.2), "datasets.bus_uc.roi.margn: unknown key"),
        (lambda p: p.update(lrr=0.1), "lrr: unknown key"),
        (lambda p: p.update(lr="1e-5"), "lr: expected float, got str"),
        (lambda p: p.update(seed=True), "seed: expected int, got bool"),
        (lambda p: p["split"].update(test=0.3), "split: train + val + test must sum to 1"),
        (lambda p: p["datasets"]["chest_xray"].pop("layout"), "datasets.chest_xray.layout: required key is missing"),
        (lambda p: p["datasets"]["chest_xray"].update(layout="kaggle"), "datasets.chest_xray.layout: expected one of"),
        (lambda p: p["datasets"]["bus_uc"]["roi"].update(margin=-0.1), "datasets.bus_uc.roi.margin: -0.1 is outside"),
        (lambda p: p["datasets"]["bus_uc"]["backbone"].update(name="vgg19"), "datasets.bus_uc.backbone: expected"),
        (
            lambda p: p["datasets"]["bus_uc"]["head"]["blocks"][0]["pdf"].update(dilation_rates=[1, 2]),
            "datasets.bus_uc.head.blocks[0].pdf: kernel_sizes and dilation_rates",
        ),
        (
            lambda p: p["datasets"]["bus_uc"]["train"]["fine_tune"].update(unfreeze_layers=4),
            "datasets.bus_uc.train.fine_tune: expected",
        ),
    ],
)
def test_mistakes_are_reported_with_their_key(params, change, message):
    with pytest.raises(config.ParamsError, match=re.escape(message)):
        config.validate(mutated(params, change))


def test_alternative_forms_are_accepted(params):
    def use_alternatives(p):
        dataset = p["datasets"]["bus_uc"]
        dataset["backbone"] = {"path": "weights/backbone.keras"}
        dataset["evaluate"]["threshold"] = {"min_sensitivity": 0.95}
        dataset["train"]["fine_tune"] = {"epochs": 1, "patience": 1, "unfreeze_layers": 4}
        dataset["head"]["blocks"][0]["pdf"]["reduce_to"] = 256

    config.validate(mutated(params, use_alternatives))


def test_a_stage_stops_before_work_with_the_key_in_its_message(tmp_path):
    (tmp_path / "params.yaml").write_text(
        (PROJECT / "params.yaml").read_text().replace("margin: 0.1", "margn: 0.1", 1)
    )
    result = subprocess.run(
        [sys.executable, "-m", "stages.download", "bus_uc"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "datasets.bus_uc.roi.margn: unknown key" in result.stderr
    assert not (tmp_path / "data").exists()


def test_unknown_dataset_name_lists_the_defined_ones(tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "stages.download", "busii"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "datasets.busii: no such dataset; defined: bus_uc, chest_xray" in result.stderr


def test_dataset_paths_follow_dvc_yaml():
    paths = DatasetPaths("bus_uc")
    dvc_yaml = (PROJECT / "dvc.yaml").read_text()
    for path in (paths.raw, paths.manifest, paths.rejected, paths.split, paths.tfrecords,
                 paths.predictions, paths.model, paths.metrics(), paths.metrics("split")):
        assert str(path).replace("bus_uc", "${key}") in dvc_yaml, path
