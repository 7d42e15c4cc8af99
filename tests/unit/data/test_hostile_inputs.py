"""Hostile and unusual input files: oversized pictures refused from their header, EXIF orientation
ignored for images and masks alike, masks of every channel layout, symbolic-link loops and Unicode
file names. Each ends in a listed reject, a one-line error or correct handling."""

from __future__ import annotations

import errno
import os
import shutil
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from ruamel.yaml import YAML

from medcls.data import sources
from medcls.data.manifest import build_manifest
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT
from medcls.images.decode import read_image, read_masks
from medcls.images.header import image_size
from medcls.images.roi import prepare_file
from medcls.params import ParamsError, RoiParams, validate
from medcls.pipeline.errors import storage_error, writing
from medcls.pipeline.outputs import write_json, written_atomically

ROOT = synthetic.BUSI_ROOT
ROI = RoiParams(use_mask=True, margin=0.0, mask_background=False, keep_aspect=False)


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())


@pytest.fixture
def busi(tmp_path: Path) -> Path:
    return synthetic.make_busi(tmp_path / "raw", n_per_class=4, size=32)


def reasons(raw: Path, **options) -> dict[str, str]:
    _, rejected = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1, **options)
    return dict(zip(rejected["path"], rejected["reason"]))


# --- size limit, from the header -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpeg", ".bmp", ".tiff", ".webp"])
def test_the_header_gives_the_size_of_each_accepted_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"picture{suffix}"
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(path)
    assert image_size(path) == (53, 37)


def test_a_jpeg_with_large_metadata_before_its_frame_still_has_a_size(tmp_path: Path) -> None:
    picture = Image.fromarray(np.zeros((21, 34, 3), np.uint8))
    picture.save(tmp_path / "icc.jpeg", icc_profile=b"\0" * 200_000)
    assert image_size(tmp_path / "icc.jpeg") == (34, 21)


def test_an_image_or_mask_over_the_pixel_limit_is_rejected_undecoded(busi: Path) -> None:
    benign = busi / ROOT / "benign"
    write_png(benign / "benign (4).png", np.full((40, 50), 90, np.uint8))
    write_png(benign / "benign (4)_mask.png", np.full((40, 50), 255, np.uint8))
    write_png(benign / "benign (3)_mask.png", np.full((40, 50), 255, np.uint8))
    found = reasons(busi, max_pixels=1999)
    assert found[f"{ROOT}/benign/benign (4).png"] == "too large: 50×40 pixels (limit 1999)"
    assert found[f"{ROOT}/benign/benign (3).png"] == "mask too large: 50×40 pixels (limit 1999)"
    assert f"{ROOT}/benign/benign (4).png" not in reasons(busi, max_pixels=2000)


def test_a_header_claiming_a_huge_picture_is_refused_before_decoding(busi: Path) -> None:
    """A 20000 x 20000 PNG header over a few bytes of data: the header alone decides."""
    image = busi / ROOT / "benign" / "benign (1).png"
    header = bytearray(image.read_bytes())
    header[16:24] = (20000).to_bytes(4, "big") * 2
    image.write_bytes(bytes(header))
    assert reasons(busi)[f"{ROOT}/benign/benign (1).png"] == (
        "too large: 20000×20000 pixels (limit 89478485)"
    )


# --- orientation ---------------------------------------------------------------------------------


def tagged_jpeg(path: Path, pixels: np.ndarray) -> None:
    """A JPEG whose EXIF Orientation says: rotate 90 degrees clockwise to display."""
    picture = Image.fromarray(pixels)
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(path, exif=exif.tobytes(), quality=100, subsampling=0)


@pytest.mark.parametrize("shape", [(48, 48), (32, 48)], ids=["square", "rectangular"])
def test_exif_orientation_is_ignored_for_images_and_masks_alike(tmp_path: Path, shape) -> None:
    """The lesion box of a tagged JPEG scan and its untagged PNG mask covers the same stored
    pixels: a bright block in the top-left corner, which a rotation would move to the top-right."""
    height, width = shape
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[2:14, 4:20] = 250
    tagged_jpeg(tmp_path / "scan.jpeg", pixels)
    mask = np.zeros(shape, np.uint8)
    mask[2:14, 4:20] = 255
    write_png(tmp_path / "scan_mask.png", mask)
    image = read_image(tmp_path / "scan.jpeg")
    assert image.shape[:2] == shape
    assert image[2:14, 4:20].min() > 200 and image[:, 24:].max() < 50
    crop = prepare_file(tmp_path, "scan.jpeg", ["scan_mask.png"], roi=ROI, size=16)
    assert crop.min() > 200  # the box holds the bright block only


def test_a_rectangular_tagged_jpeg_keeps_its_mask_in_the_manifest(busi: Path) -> None:
    benign = busi / ROOT / "benign"
    stored = read_image(benign / "benign (1).png")
    (benign / "benign (1).png").unlink()
    tagged_jpeg(benign / "benign (1).jpeg", stored)
    manifest, rejected = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    assert f"{ROOT}/benign/benign (1).jpeg" in set(manifest["path"]), rejected.to_string()


# --- masks of every channel layout ---------------------------------------------------------------


def mask_layouts(folder: Path) -> dict[str, Path]:
    """The same 4 x 6 mask (lesion: rows 1-2, columns 1-2) in every channel layout; in the layouts
    with alpha, the top-left pixel is bright but fully transparent, so not lesion."""
    lesion = np.zeros((4, 6), np.uint8)
    lesion[1:3, 1:3] = 255
    opaque = np.full((4, 6), 255, np.uint8)
    opaque[0, 0] = 0
    hidden = lesion.copy()
    hidden[0, 0] = 255
    layouts = {
        "grey": Image.fromarray(lesion, "L"),
        "grey_alpha": Image.fromarray(np.dstack([hidden, opaque]), "LA"),
        "rgb": Image.fromarray(np.dstack([np.zeros_like(lesion), lesion, np.zeros_like(lesion)])),
        "rgba": Image.fromarray(np.dstack([hidden, hidden, hidden, opaque]), "RGBA"),
    }
    palette = Image.fromarray((hidden > 0).astype(np.uint8) + (lesion > 0), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 255, 0, 0])  # index 1: the hidden pixel, 2: lesion
    layouts["palette"] = palette
    paths = {}
    for name, picture in layouts.items():
        paths[name] = folder / f"{name}.png"
        picture.save(paths[name], transparency=bytes([255, 0, 255])) if name == "palette" else picture.save(paths[name])
    return paths


@pytest.mark.parametrize("layout", ["grey", "grey_alpha", "rgb", "rgba", "palette"])
def test_one_mask_rule_for_every_channel_layout(tmp_path: Path, layout: str) -> None:
    expected = np.zeros((4, 6), bool)
    expected[1:3, 1:3] = True
    assert (read_masks([mask_layouts(tmp_path)[layout]]) == expected).all()


# --- symbolic links ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["files", "folder"])
def test_a_symlink_loop_in_a_local_source_is_one_error(busi: Path, tmp_path: Path, loop: str) -> None:
    folder = busi / ROOT / "benign"
    if loop == "files":
        os.symlink("b.png", folder / "a.png")
        os.symlink("a.png", folder / "b.png")
        expected = "a.png"
    else:
        os.symlink("..", folder / "parent")
        expected = "parent"
    for run in (sources.fingerprint, lambda source: sources.fetch(source, tmp_path / "fetched")):
        with pytest.raises(sources.SourceError, match="symbolic link") as error:
            run(str(busi))
        assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "fetched").exists()


# --- Unicode names -------------------------------------------------------------------------------


@pytest.mark.parametrize("image_form, mask_form", [("NFC", "NFD"), ("NFD", "NFC")])
def test_an_image_and_its_mask_pair_whatever_their_unicode_normalisation(
    busi: Path, image_form: str, mask_form: str
) -> None:
    benign = busi / ROOT / "benign"
    name = "échographie ñ 1"
    shutil.move(benign / "benign (3).png", benign / unicodedata.normalize(image_form, f"{name}.png"))
    shutil.move(
        benign / "benign (3)_mask.png", benign / unicodedata.normalize(mask_form, f"{name}_mask.png")
    )
    manifest, rejected = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    row = manifest[manifest["path"].str.contains("graphie")]
    assert len(row) == 1, rejected.to_string()
    assert unicodedata.normalize("NFC", row["mask_paths"].iloc[0]).endswith(f"{name}_mask.png")


# --- params bounded by memory --------------------------------------------------------------------


def test_an_image_size_beyond_what_memory_takes_is_refused_with_the_reason() -> None:
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"]["bus_uc"]["image_size"] = 20000
    with pytest.raises(ParamsError) as error:
        validate(params)
    assert str(error.value) == (
        "datasets.bus_uc: image_size 20000 is too large: at most 1024 px, as a batch of such "
        "inputs and their feature maps would not fit in memory"
    )
    params["datasets"]["bus_uc"]["image_size"] = 1024
    assert validate(params).datasets["bus_uc"].image_size == 1024
    params["max_image_pixels"] = 0
    with pytest.raises(ParamsError, match=r"^max_image_pixels: 0 is outside \[1, inf\)$"):
        validate(params)


def test_a_file_name_that_is_not_utf8_is_a_listed_reject(busi: Path, tmp_path: Path) -> None:
    """A name in another encoding (Latin-1 `é` is the byte 0xE9) cannot be written to a CSV."""
    benign = os.fsencode(busi / ROOT / "benign")
    for suffix in (b"", b"_mask"):
        os.rename(benign + b"/benign (3)" + suffix + b".png", benign + b"/caf\xe9 3" + suffix + b".png")
    manifest, rejected = build_manifest(busi, "busi", synthetic.BUSI_CLASSES, workers=1)
    found = dict(zip(rejected["path"], rejected["reason"]))
    for suffix in ("", "_mask"):
        assert found[f"{ROOT}/benign/caf\\xe9 3{suffix}.png"] == "file name is not valid UTF-8: rename the file"
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    rejected.to_csv(tmp_path / "rejected.csv", index=False)


# --- writes refused by the machine ---------------------------------------------------------------


@pytest.mark.parametrize(
    "number, expected",
    [
        (errno.ENOSPC, "no space left writing out.csv (No space left on device): free space and run dvc repro again"),
        (errno.EDQUOT, "no space left writing out.csv (Disk quota exceeded): free space and run dvc repro again"),
        (errno.EROFS, "cannot write out.csv (Read-only file system): the workspace must be writable; make it so and run dvc repro again"),
        (errno.EACCES, "out.csv: Permission denied; the source must be readable and the workspace writable by this user: change that and run dvc repro again"),
        (errno.EIO, None),
    ],
)
def test_a_write_refused_by_the_machine_names_the_file_once(tmp_path: Path, number: int, expected) -> None:
    with pytest.raises(OSError) as error, writing("out.csv"):
        raise OSError(number, os.strerror(number))  # as a failed write() raises it: no file name
    problem = storage_error(error.value)
    assert (problem and str(problem)) == expected


def test_an_output_that_fails_half_written_leaves_the_previous_file_and_no_partial(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics" / "demo.json"
    write_json(metrics, {"auc": 0.9})
    with pytest.raises(OSError) as error, written_atomically(metrics) as partial:
        partial.write_text('{"auc": 0.')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert error.value.filename == str(metrics)
    assert metrics.read_text() == '{\n  "auc": 0.9\n}\n'
    assert sorted(path.name for path in metrics.parent.iterdir()) == ["demo.json"]
