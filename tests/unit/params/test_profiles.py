"""The documented params profiles validate, and the real-data benchmark points them at ../shared."""

from pathlib import Path

import pytest

from benchmarks import real_data
from medcls.params import ApplicationBackbone, load, validate

PROJECT = Path(__file__).resolve().parents[3]


def test_offline_profile_is_valid_and_names_busi_apart_from_bus_uc():
    params = load(PROJECT / "profiles" / "offline-shared.yaml")
    assert set(params.datasets) == {"busi", "chest_xray", "chest_xray_vgg16", "bus_uclm_dev"}
    assert params.datasets["busi"].layout == "busi"
    assert params.datasets["bus_uclm_dev"].test_only
    assert params.datasets["busi"].evaluate.external == ["bus_uclm_dev"]
    assert params.datasets["chest_xray_vgg16"].backbone == ApplicationBackbone(
        name="vgg16", weights="none"
    )


def test_benchmark_makes_profile_paths_absolute_and_selects_datasets():
    params = real_data.resolved_profile(["busi"])
    busi = params["datasets"]["busi"]
    assert list(params["datasets"]) == ["busi", "bus_uclm_dev"]  # with the set it is tested on
    assert params["trained"] == ["busi"]
    # Compared resolved: ../shared may be a symbolic link.
    assert Path(busi["source"]) == (PROJECT.parent / "shared" / "data" / "busi").resolve()
    assert Path(busi["backbone"]["path"]).is_absolute()
    validate(params)


def test_benchmark_refuses_an_unknown_dataset():
    with pytest.raises(SystemExit, match="bus_uc"):
        real_data.resolved_profile(["bus_uc"])
