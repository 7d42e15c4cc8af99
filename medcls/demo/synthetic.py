"""Synthetic stand-ins for the datasets the pipeline reads, each in the dataset's own on-disk layout.

`make_bus_uc`, `make_busi`, `make_kermany` and `make_bus_uclm` write a small set of generated
images (and lesion masks, label tables) into a folder, laid out as the real download is, so the
pipeline, a new layout reader or a benchmark can run without the real data: `make demo` runs the
whole pipeline on them, and the tests build their projects from them. The images carry a
learnable class signal (a small CNN separates the classes within a couple of epochs) and every set
is deterministic for a seed. Each set also holds the faults real downloads have, so that a run
shows every rejected file with its reason: `*_FAULTS` maps each faulty file to the reason the
manifest stage gives; `BUS_UC_MASK_WITH_SUFFIX`, `BUSI_EXTRA_MASKS` and `KERMANY_DUPLICATE` are the
layout quirks each set includes. Reference: docs/reference/synthetic-data.md.
Requires n_per_class / n_patients_per_class >= 3.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

_UNDECODABLE = b"this is not an image\n"  # the bytes of every undecodable image

BUS_UC_CLASSES = ["Benign", "Malignant"]
BUS_UC_ROOT = "BUS_UC/BUS_UC/BUS_UC"
_BUS_UC_SUFFIXED_MASK_ID = 3
BUS_UC_MASK_WITH_SUFFIX = (
    f"{BUS_UC_ROOT}/Benign/masks/{_BUS_UC_SUFFIXED_MASK_ID:03d}_mask.png"  # not `<id>.png`
)
BUS_UC_FAULTS = {
    f"{BUS_UC_ROOT}/Benign/images/001.png": "undecodable image",
    f"{BUS_UC_ROOT}/Benign/images/002.png": "missing mask",
    f"{BUS_UC_ROOT}/Description.txt": "not an image",
}

BUSI_CLASSES = ["benign", "malignant"]
BUSI_ROOT = "Dataset_BUSI_with_GT"
BUSI_EXTRA_MASK_IMAGE = f"{BUSI_ROOT}/benign/benign (1).png"
BUSI_EXTRA_MASKS = (
    f"{BUSI_ROOT}/benign/benign (1)_mask.png",
    f"{BUSI_ROOT}/benign/benign (1)_mask_1.png",
)
BUSI_FAULTS = {
    f"{BUSI_ROOT}/benign/benign (2).png": "missing mask",
    f"{BUSI_ROOT}/malignant/malignant (1).png": "undecodable image",
}

KERMANY_CLASSES = ["NORMAL", "PNEUMONIA"]
KERMANY_ROOT = "chest_xray"
# The first NORMAL patient's first image, copied byte for byte under the second NORMAL patient's name.
KERMANY_DUPLICATE = (
    f"{KERMANY_ROOT}/train/NORMAL/IM-0100-0001.jpeg",
    f"{KERMANY_ROOT}/train/NORMAL/NORMAL2-IM-1401-0099.jpeg",
)
KERMANY_FAULTS = {
    f"{KERMANY_ROOT}/train/PNEUMONIA/person1_bacteria_999.jpeg": "undecodable image",
    "__MACOSX/chest_xray/train/NORMAL/._IM-0100-0001.jpeg": "outside layout root",
}
# Source folder of the i-th patient of each class, cycling: most in train, some in val and test.
_SOURCE_SPLIT_CYCLE = ("train", "train", "train", "train", "train", "val", "test")


def _write(path: Path, image: np.ndarray, extension: str = ".png") -> None:
    """Encode with OpenCV and write bytes, so names with spaces or brackets are never an issue."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(extension, image)[1].tobytes())


def _write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_UNDECODABLE)


def _write_image_or_fault(path: Path, image: np.ndarray, fault: str | None) -> None:
    """Write the image, or undecodable bytes where that is the file's fault."""
    if fault == "undecodable image":
        _write_garbage(path)
    else:
        _write(path, image)


def _ultrasound_shape(size: int) -> tuple[int, int]:
    """(height, width): frames wider than tall, so keep_aspect padding is exercised."""
    return size, size * 5 // 4


def _speckle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Ultrasound-like background: blurred Rayleigh speckle."""
    speckle = np.clip(rng.rayleigh(45, (height, width)), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(speckle, (3, 3), 0)


def _lesion_mask(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre: tuple[int, int],
    radius: float,
    irregular: bool,
) -> np.ndarray:
    """Filled lesion outline: a smooth ellipse (benign) or a spiky star-shaped polygon (malignant)."""
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    wobble = rng.uniform(0.55, 1.25, angles.size) if irregular else np.ones(angles.size)
    aspect = rng.uniform(0.6, 1.0)
    xs = centre[0] + radius * wobble * np.cos(angles)
    ys = centre[1] + radius * aspect * wobble * np.sin(angles)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.stack([xs, ys], axis=1).round().astype(np.int32)], 255)
    return mask


def _ultrasound(
    rng: np.random.Generator,
    size: int,
    malignant: bool,
    centres: list[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Speckle image with a lesion per centre (default: one, placed at random) and a mask per lesion.

    Benign lesions are dark and smooth, malignant ones bright, textured and irregular.
    """
    height, width = _ultrasound_shape(size)
    image = _speckle(rng, height, width)
    if centres is None:
        centres = [(int(rng.uniform(0.35, 0.65) * width), int(rng.uniform(0.35, 0.65) * height))]
    radius = size / 6 if len(centres) == 1 else size / 10
    masks = [
        _lesion_mask(rng, (height, width), centre, radius, irregular=malignant)
        for centre in centres
    ]
    inside = np.logical_or.reduce(masks) > 0
    lesion = rng.normal(200, 35, image.shape) if malignant else rng.normal(25, 5, image.shape)
    image[inside] = np.clip(lesion, 0, 255).astype(np.uint8)[inside]
    return image, masks


def _chest(rng: np.random.Generator, size: int, pneumonia: bool) -> np.ndarray:
    """Grey body gradient with two dark lungs; pneumonia adds bright blotchy opacities in the lungs."""
    image = np.tile(np.linspace(110, 170, size), (size, 1)).T.copy()
    lungs = np.zeros((size, size), np.uint8)
    for x in (size * 0.3, size * 0.7):
        cv2.ellipse(lungs, (int(x), size // 2), (size // 6, size // 3), 0, 0, 360, 255, -1)
    image[lungs > 0] = 50
    if pneumonia:
        for _ in range(rng.integers(3, 6)):
            blotch = np.zeros((size, size), np.uint8)
            centre = (int(rng.uniform(0.2, 0.8) * size), int(rng.uniform(0.25, 0.75) * size))
            cv2.circle(blotch, centre, int(rng.uniform(0.06, 0.12) * size), 255, -1)
            image[(blotch > 0) & (lungs > 0)] += 110
    image = cv2.GaussianBlur(image, (5, 5), 0) + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_bus_uc(root: Path, n_per_class: int = 10, size: int = 64, seed: int = 0) -> Path:
    """BUS_UC as Kaggle ships it: `BUS_UC/BUS_UC/BUS_UC/{Benign,Malignant}/{images,masks}/`, plus flat
    `images/` and `masks/` copies of every file at that root and a description text file.

    Ids run on across the classes (001..n benign, then malignant), as the flat copies need unique names.
    Faults: BUS_UC_FAULTS. Quirk: one mask named `<id>_mask.png` (BUS_UC_MASK_WITH_SUFFIX).
    """
    rng = np.random.default_rng(seed)
    layout_root = root / BUS_UC_ROOT
    for class_index, class_name in enumerate(BUS_UC_CLASSES):
        for number in range(1 + class_index * n_per_class, 1 + (class_index + 1) * n_per_class):
            image, (mask,) = _ultrasound(rng, size, malignant=class_index == 1)
            image_path = layout_root / class_name / "images" / f"{number:03d}.png"
            reason = BUS_UC_FAULTS.get(image_path.relative_to(root).as_posix())
            _write_image_or_fault(image_path, image, reason)
            mask_stem = (
                f"{number:03d}_mask" if number == _BUS_UC_SUFFIXED_MASK_ID else f"{number:03d}"
            )
            if reason != "missing mask":
                _write(layout_root / class_name / "masks" / f"{mask_stem}.png", mask)
    for kind in ("images", "masks"):
        (layout_root / kind).mkdir()
        for file in sorted(layout_root.glob(f"*/{kind}/*")):
            shutil.copy(file, layout_root / kind / file.name)
    (layout_root / "Description.txt").write_text(
        "Synthetic BUS_UC stand-in: benign vs malignant breast ultrasound.\n"
    )
    return root


def make_busi(root: Path, n_per_class: int = 10, size: int = 64, seed: int = 0) -> Path:
    """BUSI's layout: `Dataset_BUSI_with_GT/{benign,malignant,normal}/` with `benign (3).png` beside
    `benign (3)_mask.png`. Faults: BUSI_FAULTS. Quirks: a second lesion mask `_mask_1.png` for
    BUSI_EXTRA_MASK_IMAGE (disjoint from the first), and `normal` images whose masks are empty."""
    rng = np.random.default_rng(seed)
    for class_name in ("benign", "malignant", "normal"):
        for number in range(1, n_per_class + 1):
            image_path = root / BUSI_ROOT / class_name / f"{class_name} ({number}).png"
            reason = BUSI_FAULTS.get(image_path.relative_to(root).as_posix())
            if class_name == "normal":
                image = _speckle(rng, *_ultrasound_shape(size))
                masks = [np.zeros_like(image)]
            else:
                centres = _far_apart(size) if image_path == root / BUSI_EXTRA_MASK_IMAGE else None
                image, masks = _ultrasound(rng, size, class_name == "malignant", centres)
            _write_image_or_fault(image_path, image, reason)
            if reason != "missing mask":
                for index, mask in enumerate(masks):
                    _write(_busi_mask_path(image_path, index), mask)
    return root


def _far_apart(size: int) -> list[tuple[int, int]]:
    """Two lesion centres far enough apart that the lesions never touch."""
    return [(size // 4, size // 2), (size, size // 2)]


def _busi_mask_path(image_path: Path, index: int) -> Path:
    """BUSI's mask names: `x_mask.png` for the first lesion, then `x_mask_1.png`, `x_mask_2.png`."""
    return image_path.with_stem(f"{image_path.stem}_mask" + (f"_{index}" if index else ""))


def _kermany_name(class_name: str, patient: int, image: int, number: int) -> str:
    """Kermany's file names: the patient id is the prefix (IM-0115, NORMAL2-IM-1427, person12)."""
    if class_name == "PNEUMONIA":
        return f"person{patient + 1}_{('bacteria', 'virus')[image % 2]}_{number}.jpeg"
    prefix = f"IM-{100 + patient:04d}" if patient % 2 == 0 else f"NORMAL2-IM-{1400 + patient:04d}"
    return f"{prefix}-{image + 1:04d}.jpeg"


def make_kermany(
    root: Path,
    n_patients_per_class: int = 8,
    images_per_patient: int = 2,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Kermany's layout: `chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<patient-named>.jpeg`, each
    patient's images in one source folder. Faults: KERMANY_FAULTS (an undecodable .jpeg, a
    `__MACOSX` metadata file). Quirk: KERMANY_DUPLICATE (same bytes, second patient's name)."""
    rng = np.random.default_rng(seed)
    number = 0
    for class_name in KERMANY_CLASSES:
        for patient in range(n_patients_per_class):
            source_split = _SOURCE_SPLIT_CYCLE[patient % len(_SOURCE_SPLIT_CYCLE)]
            folder = root / KERMANY_ROOT / source_split / class_name
            for image in range(images_per_patient):
                number += 1
                _write(
                    folder / _kermany_name(class_name, patient, image, number),
                    _chest(rng, size, class_name == "PNEUMONIA"),
                    ".jpeg",
                )
    original, duplicate = (root / path for path in KERMANY_DUPLICATE)
    shutil.copy(original, duplicate)
    for path in KERMANY_FAULTS:
        _write_garbage(root / path)
    return root


BUS_UCLM_COLUMNS = ["Image", "Resolution", "Label", "Doppler", "Marks", "Combined"]


def make_bus_uclm(
    root: Path, n_patients: int = 6, images_per_patient: int = 4, size: int = 64, seed: int = 0
) -> Path:
    """BUS-UCLM's layout: `images/<PATIENT>_<nnn>.png`, `masks/<same name>.png` (green benign, red
    malignant) and a `;`-separated `INFO.csv` with a BOM and the columns `BUS_UCLM_COLUMNS`. Each
    patient's lesions share a class; Doppler is `Yes` on every third image and empty on every
    seventh (a missing value), Marks `Yes` on every other one."""
    rng = np.random.default_rng(seed)
    rows, number = [";".join(BUS_UCLM_COLUMNS)], 0
    for patient in range(n_patients):
        malignant = patient % 2 == 1
        code = "".join(chr(ord("A") + (patient * 7 + offset) % 26) for offset in range(4))
        for _ in range(images_per_patient):
            name = f"{code}_{number:03d}.png"
            image, (mask,) = _ultrasound(rng, size, malignant)
            _write(root / "images" / name, image)
            colour = np.zeros((*mask.shape, 3), np.uint8)
            colour[mask > 0] = (0, 0, 255) if malignant else (0, 255, 0)  # BGR: red, green
            _write(root / "masks" / name, colour)
            doppler = "" if number % 7 == 6 else ("Yes" if number % 3 == 0 else "No")
            marks = "Yes" if number % 2 else "No"
            label = "Malignant" if malignant else "Benign"
            height, width = image.shape[:2]
            rows.append(f"{name};{width}x{height};{label};{doppler};{marks};No")
            number += 1
    (root / "INFO.csv").write_bytes("\ufeff".encode() + ("\n".join(rows) + "\n").encode())
    return root
