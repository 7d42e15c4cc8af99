"""Per-image preparation: decode, crop to the lesion's region of interest, square up and resize.

This module runs inside worker processes, so it must never import TensorFlow (workers are spawned and
importing TF there would cost seconds and gigabytes per worker). `prepare_file` is the single
preprocessing entry point, shared by the TFRecord writer and prediction, so training and inference can
never drift apart. `ordered_starmap` fans such per-image work out over worker processes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

MASK_SEPARATOR = ";"


class ImageDecodeError(ValueError):
    """A file that should be an image could not be decoded."""


def mask_paths_of(cell: object) -> tuple[str, ...]:
    """Split a manifest `mask_paths` cell; pandas reads the empty cell of mask-less layouts as NaN."""
    return tuple(cell.split(MASK_SEPARATOR)) if isinstance(cell, str) and cell else ()


def read_image(path: Path) -> np.ndarray:
    """Decode any image file to RGB uint8 (grey expanded, alpha dropped) so every source looks alike."""
    try:
        bgr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # raised for empty files instead of returning None
        bgr = None
    if bgr is None:
        raise ImageDecodeError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_masks(paths: Sequence[Path]) -> np.ndarray:
    """OR all masks of one image: datasets store each extra lesion in its own mask file."""
    masks = [read_image(path).any(axis=2) for path in paths]
    if len({mask.shape for mask in masks}) > 1:
        raise ValueError(f"masks differ in size: {', '.join(map(str, paths))}")
    return np.logical_or.reduce(masks)


def roi_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1; exclusive ends) of the mask, widened by `margin` of its size on
    each side (rounded to whole pixels) so the classifier also sees the lesion's border; clipped to
    the image."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("cannot compute a region of interest from an empty mask")
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    dx, dy = round(margin * (x1 - x0)), round(margin * (y1 - y0))
    height, width = mask.shape[:2]
    return (
        int(max(x0 - dx, 0)),
        int(max(y0 - dy, 0)),
        int(min(x1 + dx, width)),
        int(min(y1 + dy, height)),
    )


def _pad_to_square(image: np.ndarray) -> np.ndarray:
    """Centre the image on a black square so resizing keeps the lesion's shape."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return np.pad(image, ((top, side - height - top), (left, side - width - left), (0, 0)))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """INTER_AREA avoids aliasing when shrinking; INTER_LINEAR avoids blockiness when enlarging."""
    shrinking = size < max(image.shape[:2])
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def prepare(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    size: int,
    use_mask: bool,
    margin: float,
    mask_background: bool,
    keep_aspect: bool,
) -> np.ndarray:
    """Turn a decoded image (and its lesion mask, if any) into the (size, size, 3) uint8 model input."""
    if use_mask and mask is not None:
        if mask_background:
            image = image * mask[..., None].astype(np.uint8)
        x0, y0, x1, y1 = roi_box(mask, margin)
        image = image[y0:y1, x0:x1]
    if keep_aspect:
        image = _pad_to_square(image)
    return _resize(image, size)


def prepare_file(
    raw_dir: Path,
    path: str,
    mask_paths: Sequence[str],
    *,
    size: int,
    use_mask: bool,
    margin: float,
    mask_background: bool,
    keep_aspect: bool,
) -> np.ndarray:
    """Read and `prepare` one manifest row; masks are only read when they are used."""
    image = read_image(raw_dir / path)
    mask = (
        read_masks([raw_dir / mask_path for mask_path in mask_paths])
        if use_mask and mask_paths
        else None
    )
    return prepare(
        image,
        mask,
        size=size,
        use_mask=use_mask,
        margin=margin,
        mask_background=mask_background,
        keep_aspect=keep_aspect,
    )


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 image (OpenCV encodes BGR)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot PNG-encode an image of shape {image.shape}")
    return png.tobytes()


def prepare_file_png(raw_dir: Path, path: str, mask_paths: Sequence[str], **roi_params) -> bytes:
    """`prepare_file`, PNG-encoded: what the TFRecord writer stores. Encoding in the worker keeps it
    parallel and sends results back across the process boundary compressed."""
    return encode_png(prepare_file(raw_dir, path, mask_paths, **roi_params))


def _apply_chunk(function: Callable[..., Any], chunk: Sequence[tuple]) -> list:
    return [function(*args) for args in chunk]


def ordered_starmap(
    function: Callable[..., Any], arguments: Iterable[tuple], *, workers: int, chunksize: int = 16
) -> Iterator[Any]:
    """Yield `function(*args)` for each args tuple, in input order.

    With workers > 1 the work runs in "spawn" processes (forking a parent that already loaded
    TensorFlow can deadlock), and at most 2 chunks per worker are in flight, so memory stays flat
    however slowly the caller consumes results. workers <= 1 runs in-process, which keeps debuggers
    and tracebacks simple.
    """
    if workers <= 1:
        yield from itertools.starmap(function, arguments)
        return
    iterator = iter(arguments)
    chunks = iter(lambda: list(itertools.islice(iterator, chunksize)), [])
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(_apply_chunk, function, chunk))
            if len(in_flight) > 2 * workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


def draw_roi_samples(
    raw_dir: Path,
    manifest: pd.DataFrame,
    out_png: Path,
    *,
    per_class: int = 4,
    seed: int,
    size: int,
    use_mask: bool,
    margin: float,
    mask_background: bool,
    keep_aspect: bool,
) -> None:
    """Save a grid showing, per class, sampled images with their mask contour and ROI box beside the
    prepared model input, so a wrong crop or a flipped channel order is obvious at a glance."""
    from matplotlib.figure import (
        Figure,
    )  # imported here so worker processes never pay for matplotlib

    roi_params = dict(
        size=size,
        use_mask=use_mask,
        margin=margin,
        mask_background=mask_background,
        keep_aspect=keep_aspect,
    )
    by_class = [
        rows.sample(n=min(per_class, len(rows)), random_state=seed)
        for _, rows in manifest.groupby("label")
    ]
    figure = Figure(figsize=(4 * len(by_class), 2 * per_class), layout="constrained")
    axes = figure.subplots(per_class, 2 * len(by_class), squeeze=False)
    for column, rows in enumerate(by_class):
        for row_axes, row in itertools.zip_longest(
            axes[:, 2 * column : 2 * column + 2], rows.itertuples()
        ):
            if row is not None:
                _draw_sample(row_axes, raw_dir, row, roi_params)
    for axis in axes.flat:
        axis.set_axis_off()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100)


def _draw_sample(axes: Sequence[Any], raw_dir: Path, row: Any, roi_params: dict[str, Any]) -> None:
    """Draw one manifest row: full image with mask contour and ROI box, then the prepared crop."""
    from matplotlib.patches import Rectangle

    full_axis, prepared_axis = axes
    mask_paths = mask_paths_of(row.mask_paths)
    full_axis.imshow(read_image(raw_dir / row.path))
    full_axis.set_title(f"{row.class_name}: {Path(row.path).name}", fontsize=7)
    if mask_paths:
        mask = read_masks([raw_dir / path for path in mask_paths])
        full_axis.contour(mask, levels=[0.5], colors="yellow", linewidths=0.8)
        if roi_params["use_mask"]:
            x0, y0, x1, y1 = roi_box(mask, roi_params["margin"])
            full_axis.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red")
            )
    prepared_axis.imshow(prepare_file(raw_dir, row.path, mask_paths, **roi_params))
    prepared_axis.set_title(f"{row.class_name}: prepared", fontsize=7)
