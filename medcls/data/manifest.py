"""Build the manifest: one row per usable image, after decoding every image and mask once.

Decoding up front turns corrupt files, empty masks and size mismatches into named rejects here,
instead of crashes or silent garbage in later stages, and yields the content hash the split uses to
keep identical images out of different splits. Every file of the raw folder ends up in exactly one
of the manifest (as an image or one of its masks) and the rejects.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.data.layouts import MASK_OF_REJECTED_IMAGE, DatasetError, Entry, parse
from medcls.images.decode import (
    MASK_SEPARATOR,
    ImageDecodeError,
    MaskMismatchError,
    check_mask_fits,
    read_image,
    read_masks,
)
from medcls.images.parallel import ordered_starmap

MANIFEST_COLUMNS = [
    "path",
    "mask_paths",
    "label",
    "class_name",
    "group",
    "sha256",
    "width",
    "height",
    "source_split",
]
REJECTED_COLUMNS = ["path", "reason"]
# The source contradicts itself; neither label can be trusted, and keeping one copy per class
# would put the same pixels on both sides of the decision.
CONFLICTING_LABELS = "identical pixels filed under both classes"


@dataclass(frozen=True)
class _Decoded:
    """What decoding an entry teaches the manifest."""

    sha256: str
    width: int
    height: int


def pixel_sha256(image: np.ndarray) -> str:
    """Hash of the decoded pixels, shape first, so a picture re-encoded differently still matches."""
    return hashlib.sha256(f"{image.shape}".encode() + image.tobytes()).hexdigest()


def _inspect(raw_dir: Path, entry: Entry) -> _Decoded | str:
    """Decode one entry's image and masks; return its facts or the reason it is unusable."""
    try:
        image = read_image(raw_dir / entry.path)
    except ImageDecodeError:
        return "undecodable image"
    if entry.mask_paths:
        try:
            mask = read_masks([raw_dir / path for path in entry.mask_paths])
            check_mask_fits(mask, image)
        except ImageDecodeError:
            return "undecodable mask"
        except MaskMismatchError:
            return "mask size differs from image"
        if not mask.any():
            return "empty mask"
    return _Decoded(pixel_sha256(image), image.shape[1], image.shape[0])


def build_manifest(
    raw_dir: Path,
    layout: str | Mapping,
    classes: Sequence[str],
    workers: int = os.cpu_count() or 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected), both sorted by path; label = index of the class in `classes`.

    A rejected image takes its masks with it into the rejects, so no raw file goes unaccounted.
    """
    entries, rejects = parse(layout, raw_dir, classes)
    labels = {name.lower(): index for index, name in enumerate(classes)}
    decoded = ordered_starmap(
        partial(_inspect, raw_dir), ((entry,) for entry in entries), workers=workers, chunksize=32
    )
    verdicts = dict(zip(entries, decoded, strict=True))  # strict: also lets the pool finish
    verdicts |= _conflicting(verdicts, labels)
    rows, reasons = [], [(reject.path, reject.reason) for reject in rejects]
    for entry, facts in verdicts.items():
        if isinstance(facts, str):
            reasons.append((entry.path, facts))
            reasons += [(mask, MASK_OF_REJECTED_IMAGE) for mask in entry.mask_paths]
            continue
        label = labels[entry.class_name.lower()]
        mask_paths = MASK_SEPARATOR.join(entry.mask_paths)
        rows.append({**asdict(entry), **asdict(facts), "mask_paths": mask_paths, "label": label})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("path", ignore_index=True)
    rejected = pd.DataFrame(reasons, columns=REJECTED_COLUMNS).sort_values(
        "path", ignore_index=True
    )
    return manifest, rejected


def _conflicting(verdicts: dict[Entry, _Decoded | str], labels: dict[str, int]) -> dict[Entry, str]:
    """The usable entries whose pixels also appear under the other class, each with its reason."""
    labels_of_pixels: dict[str, set[int]] = defaultdict(set)
    for entry, facts in verdicts.items():
        if isinstance(facts, _Decoded):
            labels_of_pixels[facts.sha256].add(labels[entry.class_name.lower()])
    return {
        entry: CONFLICTING_LABELS
        for entry, facts in verdicts.items()
        if isinstance(facts, _Decoded) and len(labels_of_pixels[facts.sha256]) > 1
    }


def check_both_classes(manifest: pd.DataFrame, classes: Sequence[str], rejected_csv: Path) -> None:
    """Stop before a one-class dataset reaches the split and training, where it fails obscurely."""
    missing = [name for label, name in enumerate(classes) if not (manifest["label"] == label).any()]
    if missing:
        raise DatasetError(
            f"no usable images of class {', '.join(map(repr, missing))} (of {list(classes)}): "
            f"see the reasons in {rejected_csv}, and check the dataset's source, layout and classes"
        )


def summarize(manifest: pd.DataFrame, rejected: pd.DataFrame) -> dict:
    """Counts for the stage's metrics file, so `dvc metrics diff` shows what a data change did."""
    return {
        "images": len(manifest),
        "per_class": {
            str(name): int(n) for name, n in sorted(Counter(manifest["class_name"]).items())
        },
        "rejected": len(rejected),
        "rejected_by_reason": {
            str(reason): int(n) for reason, n in sorted(Counter(rejected["reason"]).items())
        },
    }
