"""Layout `csv`: a folder of images plus a table. Delimiter and BOM detected, label values mapped
or rejected by name, masks by column or by folder (colour and JPEG masks included), groups by
column or file-name pattern, and every listed-but-missing or present-but-unlisted file named."""

import unicodedata
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from ruamel.yaml import YAML

from medcls.data.layouts import MASK_OF_REJECTED_IMAGE, DatasetError, parse
from medcls.data.manifest import MANIFEST_COLUMNS, build_manifest
from medcls.images.decode import read_image, read_masks
from medcls.images.masks import lesion_pixels
from medcls.images.roi import roi_box
from medcls.params import CsvLayout, ParamsError, validate

CLASSES = ["Benign", "Malignant"]
PROJECT = Path(__file__).resolve().parents[3]
SHARED_UCLM = PROJECT.parent / "shared" / "data" / "bus_uclm_dev"
LESION = (slice(8, 20), slice(10, 26))  # rows, columns of the drawn lesion in every mask
UCLM_LIKE = {
    "table": "INFO.csv",
    "image_column": "Image",
    "image_folder": "images",
    "label_column": "Label",
    "label_values": {"Benign": 0, "Malignant": 1},
    "mask_folder": "masks",
    "group_pattern": "^[A-Z]{4}",
}


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)


def ultrasound(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (32, 40), dtype=np.uint8)


def colour_mask(bgr: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros((32, 40, 3), np.uint8)
    mask[LESION] = bgr
    return mask


def noisy_jpeg_mask(path: Path) -> None:
    """A red annotation saved as a low-quality JPEG over faint background noise (a screenshot)."""
    mask = colour_mask((0, 0, 255)).astype(int)
    mask += np.random.default_rng(0).integers(0, 25, mask.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(
        str(path), np.clip(mask, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 40]
    )


def write_table(path: Path, rows: list[list[str]], delimiter: str, bom: bool) -> None:
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())


@pytest.fixture
def uclm_like(tmp_path) -> Path:
    """BUS-UCLM's shape: `;`-separated INFO.csv with a BOM, images/ and masks/ of the same names,
    green (benign) and red (malignant) masks, the patient in the file name's 4-letter prefix.
    Planted: a Normal row, a listed image that is missing, an image and a README not listed,
    an image whose mask is missing."""
    rows = [["Image", "Resolution", "Label"]]
    for number, (patient, label) in enumerate(
        [
            ("ANFO", "Benign"),
            ("ANFO", "Malignant"),
            ("BRTE", "Benign"),
            ("BRTE", "Normal"),
            ("CUZA", "Malignant"),
        ]
    ):
        name = f"{patient}_{number:03d}.png"
        rows.append([name, "856x606", label])
        write_png(tmp_path / "images" / name, ultrasound(number))
        colour = {"Benign": (0, 255, 0), "Malignant": (0, 0, 255), "Normal": (0, 0, 0)}[label]
        write_png(tmp_path / "masks" / name, colour_mask(colour))
    rows += [["GONE_005.png", "856x606", "Benign"], ["NOMA_006.png", "856x606", "Benign"]]
    write_png(tmp_path / "images" / "NOMA_006.png", ultrasound(6))
    write_png(tmp_path / "images" / "EXTR_007.png", ultrasound(7))
    (tmp_path / "README.txt").write_text("not data")
    write_table(tmp_path / "INFO.csv", rows, ";", bom=True)
    return tmp_path


def test_a_semicolon_table_with_a_bom_and_masks_by_folder(uclm_like):
    entries, rejects = parse(csv_layout(UCLM_LIKE), uclm_like, CLASSES)
    assert [(e.path, e.mask_paths, e.class_name, e.group) for e in entries] == [
        ("images/ANFO_000.png", ("masks/ANFO_000.png",), "Benign", "ANFO"),
        ("images/ANFO_001.png", ("masks/ANFO_001.png",), "Malignant", "ANFO"),
        ("images/BRTE_002.png", ("masks/BRTE_002.png",), "Benign", "BRTE"),
        ("images/CUZA_004.png", ("masks/CUZA_004.png",), "Malignant", "CUZA"),
    ]
    assert {r.path: r.reason for r in rejects} == {
        "INFO.csv": "label table",
        "README.txt": "not an image",
        "images/BRTE_003.png": "class not selected: Normal",
        "masks/BRTE_003.png": MASK_OF_REJECTED_IMAGE,
        "images/GONE_005.png": "listed in INFO.csv but missing",
        "images/NOMA_006.png": "missing mask",
        "images/EXTR_007.png": "not listed in INFO.csv",
    }
    on_disk = {p.relative_to(uclm_like).as_posix() for p in uclm_like.rglob("*") if p.is_file()}
    used = {e.path for e in entries} | {m for e in entries for m in e.mask_paths}
    assert used | {r.path for r in rejects} == on_disk | {"images/GONE_005.png"}


def test_the_manifest_reads_colour_masks_as_lesions(uclm_like):
    manifest, rejected = build_manifest(uclm_like, csv_layout(UCLM_LIKE), CLASSES, workers=1)
    assert list(manifest["label"]) == [0, 1, 0, 1]
    assert Counter(rejected["reason"])["empty mask"] == 0
    for mask_path in manifest["mask_paths"]:
        assert roi_box(read_masks([uclm_like / mask_path]), 0.0) == (10, 8, 26, 20)


def test_kept_columns_reach_the_manifest_and_others_do_not(uclm_like):
    layout = csv_layout({**UCLM_LIKE, "keep_columns": ["Resolution"]})
    manifest, _ = build_manifest(uclm_like, layout, CLASSES, workers=1)
    assert list(manifest.columns) == MANIFEST_COLUMNS + ["Resolution"]
    assert set(manifest["Resolution"]) == {"856x606"}
    plain, _ = build_manifest(uclm_like, csv_layout(UCLM_LIKE), CLASSES, workers=1)
    assert list(plain.columns) == MANIFEST_COLUMNS


@pytest.mark.parametrize(
    "kept, message",
    [
        (["Scanner"], r"no column 'Scanner'; its columns are \['Image', 'Resolution', 'Label'\]"),
        (["Label", "source"], r"keep_columns \['source'\] would overwrite the manifest's own"),
    ],
)
def test_kept_columns_that_cannot_be_kept_are_one_clear_error(uclm_like, kept, message):
    layout = csv_layout({**UCLM_LIKE, "keep_columns": kept})
    with pytest.raises(DatasetError, match=message):
        build_manifest(uclm_like, layout, CLASSES, workers=1)


def test_a_comma_table_with_id_extension_mask_and_group_columns(tmp_path):
    rows = [["case", "diagnosis", "patient", "mask file"]]
    for number, label in enumerate(["B", "M", "B", "X", ""]):
        rows.append(
            [f"c{number}", label, f"p{number % 2}", f"m{number}.png" if number != 2 else ""]
        )
        write_png(tmp_path / "scans" / f"c{number}.png", ultrasound(number))
        write_png(tmp_path / "labels" / f"m{number}.png", colour_mask((255, 255, 255)))
    write_table(tmp_path / "meta" / "table.csv", rows, ",", bom=False)
    layout = csv_layout(
        {
            "table": "meta/table.csv",
            "image_column": "case",
            "image_folder": "scans",
            "image_extension": ".png",
            "label_column": "diagnosis",
            "label_values": {"B": 0, "M": 1},
            "mask_column": "mask file",
            "mask_folder": "labels",
            "group_column": "patient",
        }
    )
    entries, rejects = parse(layout, tmp_path, CLASSES)
    assert [(e.path, e.mask_paths, e.class_name, e.group) for e in entries] == [
        ("scans/c0.png", ("labels/m0.png",), "Benign", "p0"),
        ("scans/c1.png", ("labels/m1.png",), "Malignant", "p1"),
    ]
    reasons = {r.path: r.reason for r in rejects}
    assert reasons["scans/c2.png"] == "missing mask"  # empty mask cell
    assert reasons["labels/m2.png"] == "not listed in table.csv"
    assert reasons["scans/c3.png"] == "class not selected: X"
    assert reasons["scans/c4.png"] == "no label in table.csv"


def csv_layout(options: dict) -> CsvLayout:
    """`layout: {csv: options}` as the validated params hand it to the manifest."""
    return CsvLayout.model_validate({"csv": options})


def minimal_layout(label_values: dict) -> CsvLayout:
    """A table `t.csv` with a file column `f` and a label column `y`, no masks, no groups."""
    return csv_layout({"table": "t.csv", "image_column": "f", "label_column": "y", "label_values": label_values})


def test_label_values_written_as_yaml_ints_match_table_text(tmp_path):
    write_png(tmp_path / "a.png", ultrasound(0))
    write_png(tmp_path / "b.png", ultrasound(1))
    write_table(tmp_path / "t.csv", [["f", "y"], ["a.png", "0"], ["b.png", "1"]], ",", bom=False)
    entries, _ = parse(minimal_layout({0: 0, 1: 1}), tmp_path, CLASSES)
    assert [(e.class_name, e.group, e.mask_paths) for e in entries] == [
        ("Benign", "a.png", ()),
        ("Malignant", "b.png", ()),
    ]


def test_an_image_listed_twice_is_rejected_not_counted_twice(tmp_path):
    write_png(tmp_path / "a.png", ultrasound(0))
    write_table(tmp_path / "t.csv", [["f", "y"], ["a.png", "0"], ["a.png", "1"]], ";", bom=False)
    entries, rejects = parse(minimal_layout({"0": 0, "1": 1}), tmp_path, CLASSES)
    assert entries == []
    assert {r.path: r.reason for r in rejects}["a.png"] == "listed 2 times in t.csv"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"label_column": "Diagnosis"},
            r"no column 'Diagnosis'; its columns are \['Image', 'Resolution', 'Label'\]",
        ),
        ({"table": "info.tsv"}, "no table info.tsv"),
    ],
)
def test_a_table_that_does_not_match_the_params_is_one_clear_error(uclm_like, change, message):
    with pytest.raises(DatasetError, match=message):
        parse(csv_layout({**UCLM_LIKE, **change}), uclm_like, CLASSES)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label_values": {"Benign": 0, "Malignant": 0}}, "both 0 and 1"),
        ({"group_column": "Image"}, "not both"),
        ({"group_pattern": "(["}, "not a regular expression"),
    ],
)
def test_csv_params_that_cannot_work_are_refused_at_validation(change, message):
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"]["bus_uc"]["layout"] = {"csv": {**UCLM_LIKE, **change}}
    with pytest.raises(ParamsError, match=message):
        validate(params)


def test_a_group_pattern_that_does_not_match_rejects_the_image(uclm_like):
    _, rejects = parse(csv_layout({**UCLM_LIKE, "group_pattern": r"^(\w{4})_00[01]"}), uclm_like, CLASSES)
    assert {r.path: r.reason for r in rejects}[
        "images/BRTE_002.png"
    ] == r"no group: group_pattern '^(\\w{4})_00[01]'"


# --- which mask pixels are lesion ---------------------------------------------------------


def test_a_noisy_jpeg_mask_keeps_the_lesion_box(tmp_path):
    noisy_jpeg_mask(tmp_path / "m.jpg")
    decoded = read_image(tmp_path / "m.jpg")
    assert roi_box(decoded.any(axis=2), 0.0) == (0, 0, 40, 32)  # "any non-zero": the whole image
    x0, y0, x1, y1 = roi_box(lesion_pixels(decoded), 0.0)
    assert abs(x0 - 10) <= 1 and abs(y0 - 8) <= 1 and abs(x1 - 26) <= 1 and abs(y1 - 20) <= 1


@pytest.mark.parametrize("bgr", [(0, 255, 0), (0, 0, 255), (255, 255, 255), (1, 1, 1)])
def test_any_colour_or_value_of_a_clean_mask_is_lesion(bgr):
    mask = colour_mask(bgr)
    np.testing.assert_array_equal(lesion_pixels(mask), mask.any(axis=2))


def test_an_empty_mask_stays_empty():
    assert not lesion_pixels(np.zeros((4, 5, 3), np.uint8)).any()
    assert lesion_pixels(np.zeros((4, 5), np.uint16)).shape == (4, 5)


@pytest.mark.skipif(not SHARED_UCLM.is_dir(), reason="needs ../shared/data/bus_uclm_dev")
def test_the_real_bus_uclm_table():
    manifest, rejected = build_manifest(SHARED_UCLM, csv_layout(UCLM_LIKE), CLASSES, workers=1)
    assert Counter(manifest["class_name"]) == {"Benign": 87, "Malignant": 45}
    assert manifest["group"].nunique() == 18 and manifest["group"].str.fullmatch("[A-Z]{4}").all()
    assert Counter(rejected["reason"])["class not selected: Normal"] == 199
    assert set(rejected["reason"]) <= {
        "label table",
        "class not selected: Normal",
        MASK_OF_REJECTED_IMAGE,
    }


def test_params_accept_the_csv_layout_and_name_a_wrong_one(uclm_like):
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"]["bus_uc"]["layout"] = {"csv": dict(UCLM_LIKE)}
    layout = validate(params).datasets["bus_uc"].layout
    assert parse(layout, uclm_like, CLASSES) == parse(csv_layout(UCLM_LIKE), uclm_like, CLASSES)
    params["datasets"]["bus_uc"]["layout"]["csv"]["label_values"] = {"Benign": 2}
    with pytest.raises(
        ParamsError, match=r"datasets\.bus_uc\.layout\.csv\.label_values\.Benign: 2 is outside \[0, 1\]"
    ):
        validate(params)
    params["datasets"]["bus_uc"]["layout"] = {"cvs": dict(UCLM_LIKE)}
    with pytest.raises(
        ParamsError, match=r"datasets\.bus_uc\.layout: expected one of .*\{csv: \{table"
    ):
        validate(params)


@pytest.mark.parametrize("table_form, disk_form", [("NFC", "NFD"), ("NFD", "NFC")])
def test_a_table_names_its_files_whatever_their_unicode_normalisation(tmp_path, table_form, disk_form):
    """A table typed on one system, files copied through macOS (accents decomposed), or back."""
    image, mask = "scans/échographie 1.png", "masks/échographie 1.png"
    for folder, pixels in (("scans", ultrasound(0)), ("masks", np.full((8, 8), 255, np.uint8))):
        (tmp_path / folder).mkdir()
        write_png(tmp_path / unicodedata.normalize(disk_form, f"{folder}/échographie 1.png"), pixels)
    write_table(tmp_path / "t.csv", [["f", "y"], [unicodedata.normalize(table_form, "échographie 1.png"), "0"]], ",", bom=False)
    layout = csv_layout({"table": "t.csv", "image_column": "f", "label_column": "y", "label_values": {"0": 0, "1": 1},
                         "image_folder": "scans", "mask_folder": "masks"})
    entries, rejects = parse(layout, tmp_path, CLASSES)
    assert [(unicodedata.normalize("NFC", e.path), len(e.mask_paths)) for e in entries] == [(image, 1)], rejects
    assert unicodedata.normalize("NFC", entries[0].mask_paths[0]) == mask
    assert {r.path for r in rejects} == {"t.csv"}
