"""Bad input, planted in files generated here: every case ends in a named reject or in a one-line
error, no raw file goes unaccounted, and nothing is written outside the destination.

One planted BUSI-layout set holds every kind of bad file the manifest meets; the archive, params
and prediction cases each get their own small input.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.data import sources
from medcls.data.layouts import DatasetError
from medcls.data.manifest import (
    CONFLICTING_LABELS,
    MASK_OF_REJECTED_IMAGE,
    build_manifest,
    check_both_classes,
)
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment, write_pipeline
from medcls.images.decode import MaskMismatchError, read_image, read_masks, to_uint8
from medcls.images.roi import prepare, prepare_file
from medcls.params import ParamsError, RoiParams, validate
from tests.support.builders import NOT_AN_IMAGE

ROOT = synthetic.BUSI_ROOT
N = 6
SIZE = 32
ROI = RoiParams(use_mask=True, margin=0.1, mask_background=False, keep_aspect=True)


def busi_name(class_name: str, number: int, suffix: str = "") -> str:
    return f"{ROOT}/{class_name}/{class_name} ({number}){suffix}.png"


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())


def twelve_bit_image(height: int, width: int) -> np.ndarray:
    """A 16-bit grey image holding 12-bit data (0..4095), as X-ray and some ultrasound exports do."""
    return np.tile(np.linspace(0, 4095, width), (height, 1)).astype(np.uint16)


def plant(raw: Path) -> dict[str, str]:
    """Spoil a generated BUSI set; return the reject reason expected for every file."""
    benign, malignant = raw / ROOT / "benign", raw / ROOT / "malignant"
    image_shape = read_image(benign / "benign (3).png").shape[:2]
    write_png(benign / "benign (3)_mask.png", np.full((2 * image_shape[0], 2 * image_shape[1]), 255, np.uint8))
    write_png(benign / "benign (4)_mask.png", np.zeros(image_shape, np.uint8))
    (benign / "benign (5)_mask.png").write_bytes(NOT_AN_IMAGE)
    write_png(benign / "benign (99)_mask.png", np.full(image_shape, 255, np.uint8))
    (raw / ROOT / "notes.txt").write_text("scanner export\n")
    for suffix in ("", "_mask"):  # the same picture, filed as benign and as malignant
        shutil.copy(benign / f"benign (6){suffix}.png", malignant / f"malignant (5){suffix}.png")
    twelve_bit = twelve_bit_image(*image_shape)
    write_png(malignant / "malignant (6).png", twelve_bit)
    lesion = np.zeros(image_shape, np.uint16)
    lesion[4:12, 8:20] = 1
    write_png(malignant / "malignant (6)_mask.png", lesion)
    expected = {path: reason for path, reason in synthetic.BUSI_FAULTS.items()}
    expected |= {
        busi_name("benign", 3): "mask size differs from image",
        busi_name("benign", 3, "_mask"): MASK_OF_REJECTED_IMAGE,
        busi_name("benign", 4): "empty mask",
        busi_name("benign", 4, "_mask"): MASK_OF_REJECTED_IMAGE,
        busi_name("benign", 5): "undecodable mask",
        busi_name("benign", 5, "_mask"): MASK_OF_REJECTED_IMAGE,
        busi_name("benign", 99, "_mask"): "mask without image",
        f"{ROOT}/notes.txt": "not an image",
        busi_name("benign", 6): CONFLICTING_LABELS,
        busi_name("benign", 6, "_mask"): MASK_OF_REJECTED_IMAGE,
        busi_name("malignant", 5): CONFLICTING_LABELS,
        busi_name("malignant", 5, "_mask"): MASK_OF_REJECTED_IMAGE,
        busi_name("malignant", 1, "_mask"): MASK_OF_REJECTED_IMAGE,  # its image is undecodable
    }
    for number in range(1, N + 1):
        for suffix in ("", "_mask"):
            expected[busi_name("normal", number, suffix)] = "class not selected: normal"
    return expected


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    raw = synthetic.make_busi(tmp_path_factory.mktemp("planted"), n_per_class=N, size=32)
    return raw, plant(raw)


@pytest.fixture(scope="module")
def built(planted) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw, _ = planted
    return build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)


def test_every_planted_file_gets_its_exact_reason(planted, built) -> None:
    _, expected = planted
    _, rejected = built
    assert dict(zip(rejected["path"], rejected["reason"])) == expected


def test_every_raw_file_is_in_exactly_one_of_manifest_and_rejects(planted, built) -> None:
    raw, _ = planted
    manifest, rejected = built
    on_disk = sorted(path.relative_to(raw).as_posix() for path in raw.rglob("*") if path.is_file())
    masks = [mask for cell in manifest["mask_paths"] for mask in cell.split(";")]
    accounted = [*manifest["path"], *masks, *rejected["path"]]
    assert sorted(accounted) == on_disk  # sorted lists, not sets: a file listed twice fails too


def test_high_bit_depth_image_and_mask_are_used_at_full_range(planted, built) -> None:
    raw, _ = planted
    manifest, _ = built
    row = manifest.set_index("path").loc[busi_name("malignant", 6)]
    assert row["mask_paths"] == busi_name("malignant", 6, "_mask")  # a 0/1 mask is not empty
    crop = prepare_file(raw, row.name, [row["mask_paths"]], roi=ROI, size=SIZE)
    # The lesion's columns 8..19 of a 0..4095 ramp over 40 columns reach 131 of 255 (the ramp's
    # own range mapped to 0..255); the high byte alone (IMREAD_COLOR) would give at most 8.
    assert crop.max() == 131


def test_the_depth_rule_maps_the_images_own_range_to_0_255(tmp_path: Path) -> None:
    path = tmp_path / "twelve_bit.png"
    write_png(path, twelve_bit_image(4, 16))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert (to_uint8(np.full((2, 2), 700, np.uint16)) == 0).all()  # flat: no range to stretch
    mask = tmp_path / "mask.png"
    write_png(mask, np.array([[0, 0], [0, 65535]], np.uint16))
    assert read_masks([mask]).tolist() == [[False, False], [False, True]]


def test_a_class_without_usable_images_stops_the_manifest(planted, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(planted[0], raw)
    for image in (raw / ROOT / "malignant").glob("malignant ([0-9]).png"):
        image.write_bytes(NOT_AN_IMAGE)
    manifest, rejected = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)
    assert set(rejected.set_index("path").loc[busi_name("malignant", 2), ["reason"]]) == {
        "undecodable image"
    }
    with pytest.raises(DatasetError) as error:
        check_both_classes(manifest, synthetic.BUSI_CLASSES, Path("data/manifest/busi_rejected.csv"))
    assert str(error.value) == (
        "no usable images of class 'malignant' (of ['benign', 'malignant']): see the reasons in "
        "data/manifest/busi_rejected.csv, and check the dataset's source, layout and classes"
    )


def test_classes_naming_one_folder_twice_are_refused_before_any_stage_runs() -> None:
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"]["bus_uc"]["classes"] = ["benign", "Benign"]
    with pytest.raises(ParamsError, match=r"datasets\.bus_uc\.classes: expected two different class folders"):
        validate(params)


@pytest.mark.parametrize("factor", [2, 0.5])
def test_a_mask_of_another_size_is_refused_with_both_sizes(factor: float) -> None:
    image = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((int(40 * factor), int(60 * factor)), bool)
    mask[-8:, -8:] = True  # for the larger mask, a lesion box outside the image
    with pytest.raises(MaskMismatchError) as error:
        prepare(image, mask, roi=ROI.model_copy(update={"mask_background": True}), size=SIZE)
    width, height = int(60 * factor), int(40 * factor)
    assert str(error.value) == (
        f"the mask is {width}x{height} pixels but the image is 60x40: "
        "a lesion mask must have its image's size"
    )


def test_prediction_skips_an_image_whose_mask_has_another_size(planted) -> None:
    from medcls.predict import Predictor  # imports TensorFlow

    raw, _ = planted
    predictor = Predictor(
        models=[], classes=synthetic.BUSI_CLASSES, threshold=0.5, image_size=SIZE, roi=ROI
    )
    image = raw / busi_name("benign", 3)
    predictions, failures, _ = predictor.predict_files([image], [(raw / busi_name("benign", 3, "_mask"),)])
    assert predictions == [] and [failure.path for failure in failures] == [image]
    assert failures[0].error.startswith("the mask is 80x64 pixels but the image is 40x32")


def member_escaping(kind: str) -> tarfile.TarInfo:
    names = {"parent": ("../escaped.txt", tarfile.REGTYPE, ""), "absolute": ("/tmp/escaped.txt", tarfile.REGTYPE, ""),
             "symlink": ("data/link", tarfile.SYMTYPE, "../../escaped.txt"),
             "hardlink": ("data/link", tarfile.LNKTYPE, "../escaped.txt")}
    name, kind_code, link = names[kind]
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind_code, link
    return member


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "hardlink"])
def test_an_unsafe_archive_member_refuses_the_whole_archive(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "source" / "data.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tarred:
        tarred.addfile(tarfile.TarInfo("data/ok.txt"), io.BytesIO(b""))
        tarred.addfile(member_escaping(kind), io.BytesIO(b""))
    before = set(tmp_path.rglob("*"))
    with pytest.raises(sources.UnsafeArchiveError, match="refusing to extract") as error:
        sources.fetch(str(archive), tmp_path / "work" / "raw")
    assert "\n" not in str(error.value)
    assert set(tmp_path.rglob("*")) - before == {tmp_path / "work"}  # the destination's parent only


def test_a_zip_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        link = zipfile.ZipInfo("data/link")
        link.external_attr = 0o120777 << 16
        zipped.writestr(link, "../../outside")
    with pytest.raises(sources.UnsafeArchiveError, match="links outside the destination"):
        sources.fetch(str(archive), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing-folder", "dataset source .*missing-folder' does not exist; accepted sources"),
        ("kaggle:not a handle", "bad Kaggle source"),
        ("https://example.org/data.zip", "has no valid checksum"),
    ],
)
def test_unusable_sources_are_named_in_one_line(tmp_path: Path, source: str, message: str) -> None:
    source = str(tmp_path / source) if source == "missing-folder" else source
    with pytest.raises((FileNotFoundError, ValueError), match=message) as error:
        sources.fetch(source, tmp_path / "raw")
    assert "\n" not in str(error.value) and not (tmp_path / "raw").exists()


def stage_workspace(root: Path, source: Path) -> Path:
    """A folder holding the pipeline code and params with one dataset, `busi`, read from `source`."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    dataset = params["datasets"]["bus_uc"] | {"layout": "busi", "classes": synthetic.BUSI_CLASSES}
    params["datasets"], params["trained"] = {"busi": dataset | {"source": str(source)}}, ["busi"]
    params["workers"] = 1
    write_pipeline(root / "workspace", params)
    return root / "workspace"


def run_stage_module(workspace: Path, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "busi"],
        cwd=workspace,
        env=command_environment(),
        capture_output=True,
        text=True,
    )


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() and "__pycache__" not in path.parts}


def test_stages_on_the_planted_set_write_inside_their_workspace_only(planted, tmp_path: Path) -> None:
    raw, expected = planted
    workspace = stage_workspace(tmp_path, raw)
    before = files_under(tmp_path)
    for stage in ("source", "download", "manifest"):
        completed = run_stage_module(workspace, stage)
        assert completed.returncode == 0, completed.stderr
    written = {path.relative_to(workspace).as_posix() for path in files_under(tmp_path) - before}
    assert {name for name in written if not name.startswith("data/raw/")} == {
        "data/sources/busi/fetch.json",
        "data/sources/busi/read.json",
        "data/sources/busi/hold_out.json",
        "data/manifest/busi.csv",
        "data/manifest/busi_rejected.csv",
        "reports/busi_manifest.json",
    }
    rejected = pd.read_csv(workspace / "data/manifest/busi_rejected.csv")
    assert dict(zip(rejected["path"], rejected["reason"])) == expected


def test_a_missing_local_source_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    workspace = stage_workspace(tmp_path, tmp_path / "no such folder")
    before = files_under(tmp_path)
    for stage in ("source", "download"):
        completed = run_stage_module(workspace, stage)
        assert completed.returncode == 1
        assert completed.stderr == (
            f"error: dataset source '{tmp_path / 'no such folder'}' does not exist; accepted "
            f"sources: {sources.ACCEPTED_SOURCES}\n"
        )
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("stage", ["source", "download"])
def test_a_symlink_loop_in_a_local_source_stops_the_stage_in_one_line(planted, tmp_path: Path, stage) -> None:
    source = tmp_path / "source"
    shutil.copytree(planted[0], source)
    os.symlink("..", source / ROOT / "benign" / "up")
    workspace = stage_workspace(tmp_path, source)
    completed = run_stage_module(workspace, stage)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert completed.stderr == (
        f"error: {source / ROOT / 'benign' / 'up'}: a symbolic link in the source {source} that "
        "leads to a folder containing it (to '..'); remove or fix the link, then run dvc repro again\n"
    )
    assert not (workspace / "data/raw/busi").exists() and not (workspace / "data/sources").exists()
