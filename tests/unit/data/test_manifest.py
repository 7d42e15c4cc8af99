"""Manifest building: decoded facts per usable image, and a named reason for every unusable one."""

import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from medcls.data.manifest import (
    MANIFEST_COLUMNS,
    MASK_OF_REJECTED_IMAGE,
    build_manifest,
    pixel_sha256,
    summarize,
)
from medcls.demo import synthetic
from medcls.images.decode import read_image, read_masks
from tests.support.builders import NOT_AN_IMAGE

N = 5


@pytest.fixture(scope="module")
def busi(tmp_path_factory) -> Path:
    return synthetic.make_busi(tmp_path_factory.mktemp("busi"), n_per_class=N)


def test_bus_uc_manifest_columns_counts_and_rejects(tmp_path: Path) -> None:
    raw = synthetic.make_bus_uc(tmp_path, n_per_class=N)
    manifest, rejected = build_manifest(raw, "bus_uc", synthetic.BUS_UC_CLASSES, workers=1)
    assert list(manifest.columns) == MANIFEST_COLUMNS and list(rejected.columns) == [
        "path",
        "reason",
        "source",
    ]
    assert manifest["path"].is_monotonic_increasing and rejected["path"].is_monotonic_increasing
    assert Counter(zip(manifest["class_name"], manifest["label"])) == {
        ("Benign", 0): N - 2,
        ("Malignant", 1): N,
    }
    assert synthetic.BUS_UC_FAULTS.items() <= dict(zip(rejected["path"], rejected["reason"])).items()
    assert set(rejected["reason"]) == {
        "unlabelled flat copy",
        MASK_OF_REJECTED_IMAGE,
        *synthetic.BUS_UC_FAULTS.values(),
    }
    assert (manifest[["width", "height"]] == (80, 64)).all().all()
    assert (manifest["source_split"] == "").all() and (manifest["group"] == manifest["path"]).all()


def test_sha256_hashes_decoded_pixels_so_reencoded_copies_match(busi: Path, tmp_path: Path) -> None:
    manifest, _ = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    first = manifest.iloc[0]
    assert first["sha256"] == pixel_sha256(read_image(busi / first["path"]))
    pixels = read_image(busi / first["path"])
    bmp = tmp_path / "copy.bmp"
    bmp.write_bytes(cv2.imencode(".bmp", pixels)[1].tobytes())
    assert pixel_sha256(read_image(bmp)) == first["sha256"]
    assert (
        pixel_sha256(pixels.reshape(pixels.shape[1], pixels.shape[0], 3)) != first["sha256"]
    )  # shape counts
    assert manifest["sha256"].is_unique


def test_extra_masks_are_joined_with_semicolons(busi: Path) -> None:
    manifest, _ = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    masks = dict(zip(manifest["path"], manifest["mask_paths"]))
    assert masks[synthetic.BUSI_EXTRA_MASK_IMAGE] == ";".join(synthetic.BUSI_EXTRA_MASKS)
    lesions = [read_masks([busi / path]) for path in synthetic.BUSI_EXTRA_MASKS]
    merged = read_masks([busi / path for path in synthetic.BUSI_EXTRA_MASKS])
    assert (
        merged.sum()
        == sum(lesion.sum() for lesion in lesions)
        > max(lesion.sum() for lesion in lesions)
    )


def test_mask_problems_are_named(busi: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(busi, raw)
    benign = raw / synthetic.BUSI_ROOT / "benign"
    (benign / "benign (3)_mask.png").write_bytes(NOT_AN_IMAGE)
    cv2.imwrite(str(benign / "benign (4)_mask.png"), np.full((10, 10), 255, np.uint8))
    manifest, rejected = build_manifest(raw, "busi", ["normal", "benign"], workers=2)
    reasons = dict(zip(rejected["path"], rejected["reason"]))
    assert reasons[f"{synthetic.BUSI_ROOT}/benign/benign (3).png"] == "undecodable mask"
    assert reasons[f"{synthetic.BUSI_ROOT}/benign/benign (4).png"] == "mask size differs from image"
    assert Counter(reasons.values())["empty mask"] == N  # every normal image
    assert Counter(reasons.values())["class not selected: malignant"] == 2 * N
    assert set(manifest["label"]) == {1} and len(manifest) == N - 3


def test_workers_do_not_change_the_result(busi: Path) -> None:
    in_process = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    pooled = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=2)
    for serial, parallel in zip(in_process, pooled):
        assert serial.equals(parallel)


def test_summarize_counts_images_and_reasons(busi: Path) -> None:
    summary = summarize(*build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1))
    assert summary == {
        "images": 2 * N - 2,
        "per_class": {"benign": N - 1, "malignant": N - 1},
        "rejected": 2 * N + 3,
        "rejected_by_reason": {
            "class not selected: normal": 2 * N,
            MASK_OF_REJECTED_IMAGE: 1,
            "missing mask": 1,
            "undecodable image": 1,
        },
    }
