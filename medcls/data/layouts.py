"""Turn a raw dataset folder into labelled entries, accounting for every file.

Downloaded datasets nest their real content at varying depths and carry extra copies (BUS_UC's
unlabelled flat folders, Kaggle's duplicated `chest_xray/chest_xray`, `__MACOSX`). Each layout therefore
first locates its root, then sorts every file into an `Entry` or a `Reject` with a reason, so nothing
is counted twice and nothing disappears silently.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from medcls.params import CsvLayout, CsvOptions, NamedLayout
from medcls.pipeline.errors import PipelineError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
SOURCE_SPLITS = ("train", "val", "test")
OUTSIDE_ROOT = "outside layout root"
MASK_OF_REJECTED_IMAGE = "mask of a rejected image"
_MASK_SUFFIX = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
_KERMANY_PATIENT = re.compile(r"person\d+(?=_)|(?:NORMAL\d+-)?IM-\d+(?=-)")


class DatasetError(PipelineError, ValueError):
    """The raw folder cannot make the requested two-class dataset; the message says what to check."""


@dataclass(frozen=True)
class Entry:
    """One usable image; paths are POSIX and relative to the raw dataset dir."""

    path: str
    mask_paths: tuple[str, ...]
    class_name: str
    group: str
    source_split: str = ""
    # a csv layout's `keep_columns`: (column, cell) pairs carried into the manifest
    kept: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Reject:
    """A file that is not used, with the reason why."""

    path: str
    reason: str


@dataclass(frozen=True)
class _Item:
    """A file a layout recognised, before images and masks are paired (`key` names the image)."""

    is_mask: bool
    key: str
    class_name: str
    source_split: str = ""
    group: str = ""


@dataclass(frozen=True)
class _Layout:
    """How one layout is recognised (`class_dirs`, `class_dir_ok`) and read (`classify`)."""

    structure: str
    class_dirs: Callable[[Path], Iterator[Path]]
    class_dir_ok: Callable[[Path], bool]
    classify: Callable[[PurePosixPath, frozenset[str]], _Item | str]
    has_masks: bool


def _subdirs(directory: Path) -> Iterator[Path]:
    return (child for child in sorted(directory.iterdir()) if child.is_dir())


def _has_images(directory: Path) -> bool:
    return any(child.suffix.lower() in IMAGE_SUFFIXES for child in directory.iterdir())


def _has_images_and_masks_folders(directory: Path) -> bool:
    return {"images", "masks"} <= {child.name.lower() for child in _subdirs(directory)}


def _unselected(folder: str, classes: frozenset[str]) -> str | None:
    """The reject reason for a class folder not requested (`classes` are lower-cased), else None."""
    return None if folder.lower() in classes else f"class not selected: {folder}"


def is_mask_name(stem: str) -> bool:
    """Whether a file stem names a lesion mask in BUSI's way: `<name>_mask` or `<name>_mask_<n>`."""
    return bool(_MASK_SUFFIX.search(stem))


def _mask_key(folder: str, stem: str) -> str:
    """Key shared by an image and its masks: `x_mask`, `x_mask_1` and `x` (in masks/) all map to `x`.

    In Unicode normal form C: a name typed on one system and copied through another (macOS stores
    decomposed accents) is still the same name, so `é.png` pairs with `é_mask.png` either way."""
    return unicodedata.normalize("NFC", f"{folder}/{_MASK_SUFFIX.sub('', stem)}")


def _classify_bus_uc(rel: PurePosixPath, classes: frozenset[str]) -> _Item | str:
    """<Class>/{images,masks}/<id>.png; the root's flat images/ and masks/ repeat them, classless."""
    kind = rel.parts[-2].lower() if len(rel.parts) >= 2 else ""
    if len(rel.parts) == 2 and kind in ("images", "masks"):
        return "unlabelled flat copy"
    if len(rel.parts) != 3 or kind not in ("images", "masks"):
        return OUTSIDE_ROOT
    folder = rel.parts[0]
    return _unselected(folder, classes) or _Item(
        kind == "masks", _mask_key(folder, rel.stem), folder
    )


def _classify_busi(rel: PurePosixPath, classes: frozenset[str]) -> _Item | str:
    """<class>/<name>.png beside <name>_mask.png and optional extra lesions <name>_mask_<n>.png."""
    if len(rel.parts) != 2:
        return OUTSIDE_ROOT
    folder = rel.parts[0]
    return _unselected(folder, classes) or _Item(
        is_mask_name(rel.stem), _mask_key(folder, rel.stem), folder
    )


def kermany_patient(stem: str) -> str:
    """Patient id from a Kermany file name (`person12_virus_5` -> `person12`, `NORMAL2-IM-1427-0001` ->
    `NORMAL2-IM-1427`), so one patient's images never straddle splits; unknown patterns keep the stem.

    Kermany's test folder numbers its patients anew, so a few unrelated train and test patients share
    an id; linking them only makes split units coarser, it never leaks.
    """
    match = _KERMANY_PATIENT.match(stem)
    return match.group(0) if match else stem


def _classify_kermany(rel: PurePosixPath, classes: frozenset[str]) -> _Item | str:
    """<split>/<CLASS>/<file>.jpeg, the split being the source's own train/val/test."""
    if len(rel.parts) != 3 or rel.parts[0].lower() not in SOURCE_SPLITS:
        return OUTSIDE_ROOT
    split, folder = rel.parts[0].lower(), rel.parts[1]
    return _unselected(folder, classes) or _Item(
        False, str(rel), folder, split, kermany_patient(rel.stem)
    )


def _kermany_class_dirs(root: Path) -> Iterator[Path]:
    return (
        class_dir
        for split in _subdirs(root)
        if split.name.lower() in SOURCE_SPLITS
        for class_dir in _subdirs(split)
    )


LAYOUTS: dict[str, _Layout] = {
    "bus_uc": _Layout(
        "<root>/<Class>/images/ and <root>/<Class>/masks/",
        _subdirs,
        _has_images_and_masks_folders,
        _classify_bus_uc,
        has_masks=True,
    ),
    "busi": _Layout(
        "<root>/<class>/<name>.png beside <name>_mask.png",
        _subdirs,
        _has_images,
        _classify_busi,
        has_masks=True,
    ),
    "kermany": _Layout(
        "<root>/{train,val,test}/<CLASS>/<file>.jpeg",
        _kermany_class_dirs,
        _has_images,
        _classify_kermany,
        has_masks=False,
    ),
}


def parse(
    layout: NamedLayout | CsvLayout,
    raw_dir: Path,
    classes: Sequence[str],
    reserved: Sequence[str] = (),
) -> tuple[list[Entry], list[Reject]]:
    """Parse `raw_dir` with the named layout (or `{csv: {...}}`, whose kept columns may not be
    named as the manifest's own `reserved` ones) into entries and rejects, both sorted by path."""
    if isinstance(layout, CsvLayout):
        entries, rejects = parse_table(raw_dir, layout.csv, classes, reserved)
        return sorted(entries, key=lambda e: e.path), sorted(rejects, key=lambda r: r.path)
    spec, wanted = LAYOUTS[layout], frozenset(name.lower() for name in classes)
    root = _find_root(spec, raw_dir, wanted)
    items: dict[str, _Item] = {}
    files, rejects = _raw_files(raw_dir)
    for file in files:
        rel = file.relative_to(raw_dir).as_posix()
        verdict = _classify(spec, file, root, wanted)
        if isinstance(verdict, str):
            rejects.append(Reject(rel, verdict))
        else:
            items[rel] = verdict
    entries, pairing_rejects = _pair(items) if spec.has_masks else (_unpaired(items), [])
    return sorted(entries, key=lambda e: e.path), sorted(
        rejects + pairing_rejects, key=lambda r: r.path
    )


def _raw_files(raw_dir: Path) -> tuple[list[Path], list[Reject]]:
    """Every file under `raw_dir`, sorted, but those whose name is not valid UTF-8 (a name from an
    old archive or another system's encoding): no CSV can hold such a name, so each is a reject,
    listed with its undecodable bytes written as escapes (`\\xff`)."""
    files, rejects = [], []
    for file in sorted(path for path in raw_dir.rglob("*") if path.is_file()):
        rel = file.relative_to(raw_dir).as_posix()
        try:
            rel.encode("utf-8")
            files.append(file)
        except UnicodeEncodeError:
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            rejects.append(Reject(shown, "file name is not valid UTF-8: rename the file"))
    return files, rejects


def _classify(spec: _Layout, file: Path, root: Path, classes: frozenset[str]) -> _Item | str:
    if not file.is_relative_to(root):
        return OUTSIDE_ROOT
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image"
    return spec.classify(PurePosixPath(file.relative_to(root).as_posix()), classes)


def _find_root(spec: _Layout, raw_dir: Path, classes: frozenset[str]) -> Path:
    """The shallowest directory holding a well-formed folder for every requested class."""
    candidates = [raw_dir] + [
        d for d in raw_dir.rglob("*") if d.is_dir() and not _is_junk(d.relative_to(raw_dir))
    ]
    for candidate in sorted(candidates, key=lambda d: (len(d.parts), d)):
        found = {d.name.lower() for d in spec.class_dirs(candidate) if spec.class_dir_ok(d)}
        if classes <= found:
            return candidate
    top = (
        sorted(child.name + ("/" if child.is_dir() else "") for child in raw_dir.iterdir())
        if raw_dir.is_dir()
        else []
    )
    raise DatasetError(
        f"no folder under {raw_dir} has the expected layout {spec.structure} with class folders "
        f"{sorted(classes)}; found at the top of it: {top[:20] or 'nothing'}. "
        "Check the dataset's `layout`, `classes` and `source` params."
    )


def _is_junk(rel: Path) -> bool:
    """macOS archive metadata and hidden folders never hold the real layout."""
    return any(part.startswith(("__MACOSX", ".")) for part in rel.parts)


def _pair(items: dict[str, _Item]) -> tuple[list[Entry], list[Reject]]:
    """Attach masks to their image by key; images without masks and orphan masks are rejected."""
    images: dict[str, list[str]] = defaultdict(list)
    masks: dict[str, list[str]] = defaultdict(list)
    for path, item in items.items():
        (masks if item.is_mask else images)[item.key].append(path)
    entries, rejects = [], []
    for key, (image, *duplicates) in images.items():
        rejects += [Reject(path, f"duplicate image name: {image}") for path in duplicates]
        if key in masks:
            entries.append(_entry(image, items[image], tuple(sorted(masks[key]))))
        else:
            rejects.append(Reject(image, "missing mask"))
    rejects += [
        Reject(path, "mask without image")
        for key, paths in masks.items()
        if key not in images
        for path in paths
    ]
    return entries, rejects


def _unpaired(items: dict[str, _Item]) -> list[Entry]:
    return [_entry(path, item, ()) for path, item in items.items()]


def _entry(path: str, item: _Item, mask_paths: tuple[str, ...]) -> Entry:
    """Layouts without patient ids use the image's own path as its group."""
    return Entry(path, mask_paths, item.class_name, item.group or path, item.source_split)


# --- layout `csv`: a folder of images plus a table ------------------------------------------


def read_table(path: Path) -> pd.DataFrame:
    """Every cell as text; the delimiter (`;`, `,` or tab) and a UTF-8 BOM are detected, and a
    table that is not UTF-8 is read as Windows-1252 (spreadsheet exports)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    header = text.splitlines()[0] if text.strip() else ""
    try:
        delimiter = csv.Sniffer().sniff(header, delimiters=";,\t").delimiter
    except csv.Error:
        delimiter = ","  # a one-column header has no delimiter to find
    table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    return table.rename(columns=str.strip).apply(lambda column: column.str.strip())


def _check_columns(table: pd.DataFrame, spec: CsvOptions, reserved: Sequence[str]) -> None:
    """Every column the params name exists, and no kept column would overwrite one the manifest
    has itself (`reserved`)."""
    clashing = [column for column in spec.keep_columns if column in reserved]
    if clashing:
        raise DatasetError(
            f"{spec.table}: keep_columns {clashing} would overwrite the manifest's own columns "
            f"{list(reserved)}; keep the table's other columns only"
        )
    wanted = [spec.image_column, spec.label_column, spec.mask_column, spec.group_column]
    wanted += spec.keep_columns
    missing = [column for column in wanted if column is not None and column not in table]
    if missing:
        raise DatasetError(
            f"{spec.table}: no column {', '.join(map(repr, missing))}; its columns are "
            f"{list(table.columns)}. Check the dataset's `layout.csv` params."
        )


def _image_path(spec: CsvOptions, cell: str) -> str:
    name = (
        cell
        if not spec.image_extension or cell.lower().endswith(spec.image_extension.lower())
        else cell + spec.image_extension
    )
    return posixpath.normpath(posixpath.join(spec.image_folder, name))


def _mask_path(spec: CsvOptions, row: Mapping[str, str], image: str) -> str | None:
    """The row's mask file (relative to the raw folder); "" when its mask cell is empty, None when
    the layout has no masks."""
    if spec.mask_column is not None:
        cell = row[spec.mask_column]
        return posixpath.normpath(posixpath.join(spec.mask_folder or "", cell)) if cell else ""
    if spec.mask_folder is not None:
        return posixpath.normpath(
            posixpath.join(spec.mask_folder, posixpath.relpath(image, spec.image_folder or "."))
        )
    return None


def _group(spec: CsvOptions, row: Mapping[str, str], image: str) -> str | None:
    """The row's group (without a group param, the image's own path); None when the group column
    is empty or the pattern does not match."""
    if spec.group_column is not None:
        return row[spec.group_column] or None
    if spec.group_pattern is not None:
        match = re.search(spec.group_pattern, posixpath.basename(image))
        return (match.group(1) if match.re.groups else match.group(0)) if match else None
    return image


def parse_table(
    raw_dir: Path, spec: CsvOptions, classes: Sequence[str], reserved: Sequence[str] = ()
) -> tuple[list[Entry], list[Reject]]:
    """One entry per usable table row; every other row and every unlisted file is a reject.
    `reserved`: the manifest's own columns, which no kept column may be named."""
    table_path = posixpath.normpath(spec.table)
    if not (raw_dir / table_path).is_file():
        raise DatasetError(
            f"no table {table_path} in {raw_dir}; check the `layout.csv.table` param"
        )
    table = read_table(raw_dir / table_path)
    _check_columns(table, spec, reserved)
    table_name = posixpath.basename(table_path)
    files, misnamed = _raw_files(raw_dir)
    on_disk = {path.relative_to(raw_dir).as_posix() for path in files}
    # A table typed on one system names files copied through another (macOS stores accents
    # decomposed): a name matches its file whatever the Unicode normal form of either.
    stored = {unicodedata.normalize("NFC", path): path for path in on_disk}

    def as_stored(path: str) -> str:
        return stored.get(unicodedata.normalize("NFC", path), path)

    listed = Counter(as_stored(_image_path(spec, cell)) for cell in table[spec.image_column] if cell)
    entries, rejects, accounted = [], [Reject(table_path, "label table"), *misnamed], {table_path}
    for row in table.to_dict("records"):
        if not row[spec.image_column]:
            continue  # a row without a file name names nothing to account for
        image = as_stored(_image_path(spec, row[spec.image_column]))
        mask = _mask_path(spec, row, image)
        mask = mask and as_stored(mask)
        if image in accounted:
            continue  # listed twice: rejected once below
        accounted.add(image)
        if mask:
            accounted.add(mask)
        reason = _row_problem(spec, row, image, mask, listed[image], on_disk, table_name)
        if reason:  # a listed but missing image is a reject too, though no file has its path
            rejects.append(Reject(image, reason))
            if mask and mask in on_disk:
                rejects.append(Reject(mask, MASK_OF_REJECTED_IMAGE))
            continue
        label = spec.label_values[row[spec.label_column]]
        kept = tuple((column, row[column]) for column in spec.keep_columns)
        entries.append(
            Entry(
                image, (mask,) if mask else (), classes[label], _group(spec, row, image), kept=kept
            )
        )
    rejects += [
        Reject(
            path,
            f"not listed in {table_name}"
            if PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES
            else "not an image",
        )
        for path in sorted(on_disk - accounted)
    ]
    return entries, rejects


def _row_problem(
    spec: CsvOptions,
    row: Mapping[str, str],
    image: str,
    mask: str | None,
    times_listed: int,
    on_disk: set[str],
    table_name: str,
) -> str | None:
    """Why a listed row cannot become an entry, or None."""
    value = row[spec.label_column]
    if times_listed > 1:
        return f"listed {times_listed} times in {table_name}"
    if value not in spec.label_values:
        return f"class not selected: {value}" if value else f"no label in {table_name}"
    if image not in on_disk:
        return f"listed in {table_name} but missing"
    if mask is not None and mask not in on_disk:
        return "missing mask"
    if _group(spec, row, image) is None:
        return f"no group: {spec.group_column or 'group_pattern ' + repr(spec.group_pattern)}"
    return None
