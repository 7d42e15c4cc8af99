"""Build the manifest: one row per usable image, after decoding every image and mask once.

Decoding up front turns corrupt files, empty masks and size mismatches into named rejects here,
instead of crashes or silent garbage in later stages, and yields the content hash the split uses to
keep identical images out of different splits. Every file of the raw folder ends up in exactly one
of the manifest (as an image or one of its masks) and the rejects.

A dataset of several sources reads each source's folder with its own layout and classes; its rows
name their source, their groups are made unique per source (the same patient id in two hospitals
is two patients), and identical pixels are looked for across all sources.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.data.layouts import MASK_OF_REJECTED_IMAGE, DatasetError, Entry, parse
from medcls.images.decode import (
    MASK_SEPARATOR,
    ImageDecodeError,
    ImageTooLargeError,
    MaskMismatchError,
    check_decodable_size,
    check_mask_fits,
    read_image,
    read_masks,
)
from medcls.images.parallel import ordered_starmap
from medcls.params import DEFAULT_MAX_IMAGE_PIXELS

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
    "source",
]
REJECTED_COLUMNS = ["path", "reason", "source"]
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


def _inspect(raw_dir: Path, max_pixels: int, entry: Entry) -> _Decoded | str:
    """Decode one entry's image and masks, each after its header showed it within `max_pixels`;
    return its facts or the reason it is unusable."""
    try:
        check_decodable_size(raw_dir / entry.path, max_pixels)
        image = read_image(raw_dir / entry.path)
    except ImageTooLargeError as error:
        return str(error)
    except ImageDecodeError:
        return "undecodable image"
    if entry.mask_paths:
        try:
            for path in entry.mask_paths:
                check_decodable_size(raw_dir / path, max_pixels)
            mask = read_masks([raw_dir / path for path in entry.mask_paths])
            check_mask_fits(mask, image)
        except ImageTooLargeError as error:
            return f"mask {error}"
        except ImageDecodeError:
            return "undecodable mask"
        except MaskMismatchError:
            return "mask size differs from image"
        if not mask.any():
            return "empty mask"
    return _Decoded(pixel_sha256(image), image.shape[1], image.shape[0])


@dataclass(frozen=True)
class SourceReading:
    """How to read one source: its folder (relative to the dataset's raw folder; "" for the raw
    folder itself), its layout, and its own class names for label 0 and 1."""

    folder: str
    layout: str | Mapping
    classes: Sequence[str]


def build_manifest(
    raw_dir: Path,
    layout: str | Mapping,
    classes: Sequence[str],
    workers: int = os.cpu_count() or 1,
    source: str = "",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest of a dataset of one source, named `source`, in `raw_dir` itself: see
    `build_sources_manifest`."""
    readings = {source: SourceReading("", layout, classes)}
    return build_sources_manifest(raw_dir, readings, classes, workers, max_pixels)


def build_sources_manifest(
    raw_dir: Path,
    sources: Mapping[str, SourceReading],
    classes: Sequence[str],
    workers: int = os.cpu_count() or 1,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected), both sorted by path, paths relative to `raw_dir`; label = index
    of the class in the source's classes, class_name the dataset's `classes` name for it.

    A rejected image takes its masks with it into the rejects, so no raw file goes unaccounted;
    an image or mask of more than `max_pixels` pixels is rejected without being decoded.
    """
    entries, rejects, source_of = [], [], {}
    for name, reading in sources.items():
        found, unused = parse(
            reading.layout, raw_dir / reading.folder, reading.classes, MANIFEST_COLUMNS
        )
        source_labels = {folder.lower(): index for index, folder in enumerate(reading.classes)}
        for entry in found:
            class_name = classes[source_labels[entry.class_name.lower()]]
            entry = _within_dataset(entry, name, reading.folder, class_name)
            entries.append(entry)
            source_of[entry] = name
        rejects += [
            (posixpath.join(reading.folder, reject.path), reject.reason, name) for reject in unused
        ]
    labels = {class_name.lower(): index for index, class_name in enumerate(classes)}
    decoded = ordered_starmap(
        partial(_inspect, raw_dir, max_pixels),
        ((entry,) for entry in entries),
        workers=workers,
        chunksize=32,
    )
    verdicts = dict(zip(entries, decoded, strict=True))  # strict: also lets the pool finish
    verdicts |= _conflicting(verdicts, labels, source_of if len(sources) > 1 else None)
    rows, kept_columns = [], []
    for entry, facts in verdicts.items():
        source = source_of[entry]
        if isinstance(facts, str):
            rejects.append((entry.path, facts, source))
            rejects += [(mask, MASK_OF_REJECTED_IMAGE, source) for mask in entry.mask_paths]
            continue
        label = labels[entry.class_name.lower()]
        mask_paths = MASK_SEPARATOR.join(entry.mask_paths)
        kept = dict(entry.kept)
        kept_columns += [column for column in kept if column not in kept_columns]
        rows.append(
            {**asdict(entry), **asdict(facts), "mask_paths": mask_paths, "label": label}
            | {"source": source}
            | kept
        )
    columns = MANIFEST_COLUMNS + kept_columns  # a source without a kept column leaves it empty
    manifest = pd.DataFrame(rows, columns=columns).sort_values("path", ignore_index=True)
    rejected = pd.DataFrame(rejects, columns=REJECTED_COLUMNS).sort_values(
        "path", ignore_index=True
    )
    return manifest, rejected


def _within_dataset(entry: Entry, source: str, folder: str, class_name: str) -> Entry:
    """A source's entry as the dataset's: paths relative to the dataset's raw folder, the dataset's
    class name, and, for a source in a folder of its own, the group prefixed with the source."""
    if not folder:
        return replace(entry, class_name=class_name)
    return replace(
        entry,
        path=posixpath.join(folder, entry.path),
        mask_paths=tuple(posixpath.join(folder, mask) for mask in entry.mask_paths),
        class_name=class_name,
        group=f"{source}/{entry.group}",
    )


def _conflicting(
    verdicts: dict[Entry, _Decoded | str],
    labels: dict[str, int],
    source_of: Mapping[Entry, str] | None,
) -> dict[Entry, str]:
    """The usable entries whose pixels also appear under the other class, each with its reason;
    with `source_of` (several sources) the reason says under which class each source filed them."""
    copies: dict[str, list[Entry]] = defaultdict(list)
    for entry, facts in verdicts.items():
        if isinstance(facts, _Decoded):
            copies[facts.sha256].append(entry)
    conflicting = {}
    for same_pixels in copies.values():
        if len({labels[entry.class_name.lower()] for entry in same_pixels}) < 2:
            continue
        reason = CONFLICTING_LABELS
        if source_of is not None:
            filed = defaultdict(set)
            for entry in same_pixels:
                filed[source_of[entry]].add(entry.class_name)
            by_source = [f"{source}: {', '.join(sorted(filed[source]))}" for source in sorted(filed)]
            reason += f" ({'; '.join(by_source)})"
        conflicting |= dict.fromkeys(same_pixels, reason)
    return conflicting


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
    summary = {
        "images": len(manifest),
        "per_class": {
            str(name): int(n) for name, n in sorted(Counter(manifest["class_name"]).items())
        },
        "rejected": len(rejected),
        "rejected_by_reason": {
            str(reason): int(n) for reason, n in sorted(Counter(rejected["reason"]).items())
        },
    }
    if manifest["source"].nunique() > 1:
        per_source = pd.crosstab(manifest["source"], manifest["class_name"])
        summary["per_source"] = {
            str(source): {str(name): int(n) for name, n in counts.items()}
            for source, counts in per_source.iterrows()
        }
    return summary
