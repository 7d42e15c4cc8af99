"""Per-image preparation: crop to the lesion's region of interest, square up and resize.

This module runs inside worker processes, so it must never import TensorFlow (workers are spawned and
importing TF there would cost seconds and gigabytes per worker). `prepare_file` is the single
preprocessing entry point, shared by the TFRecord writer and prediction, so training and inference can
never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from medcls.images.decode import check_mask_fits, read_image, read_masks

if TYPE_CHECKING:
    from medcls.params import RoiParams


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


def equalize(image: np.ndarray, clip_limit: float) -> np.ndarray:
    """CLAHE on the lightness channel (8 x 8 tiles of the image, whatever its size): contrast is evened
    out locally, as between scanners' gain settings, while colour (Doppler overlays) is kept."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(8, 8))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def prepare(
    image: np.ndarray, mask: np.ndarray | None, *, roi: RoiParams, size: int
) -> np.ndarray:
    """Turn a decoded image (and its lesion mask, if any) into the (size, size, 3) uint8 model input,
    cropped as `roi` says (at its `margin`: margin jitter's wide copies are the writer's business)."""
    if roi.use_mask and mask is not None:
        check_mask_fits(mask, image)
        if roi.mask_background:
            image = image * mask[..., None].astype(np.uint8)
        x0, y0, x1, y1 = roi_box(mask, roi.margin)
        image = image[y0:y1, x0:x1]
    if roi.clahe:
        image = equalize(image, roi.clahe)
    if roi.keep_aspect:
        image = _pad_to_square(image)
    return _resize(image, size)


def prepare_file(
    raw_dir: Path, path: str, mask_paths: Sequence[str], *, roi: RoiParams, size: int
) -> np.ndarray:
    """Read and `prepare` one manifest row; masks are only read when they are used."""
    image = read_image(raw_dir / path)
    mask = (
        read_masks([raw_dir / mask_path for mask_path in mask_paths])
        if roi.use_mask and mask_paths
        else None
    )
    return prepare(image, mask, roi=roi, size=size)


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 image (OpenCV encodes BGR)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot PNG-encode an image of shape {image.shape}")
    return png.tobytes()


def prepare_file_png(
    raw_dir: Path, path: str, mask_paths: Sequence[str], *, roi: RoiParams, size: int
) -> bytes:
    """`prepare_file`, PNG-encoded: what the TFRecord writer stores. Encoding in the worker keeps it
    parallel and sends results back across the process boundary compressed."""
    return encode_png(prepare_file(raw_dir, path, mask_paths, roi=roi, size=size))


def prepare_file_png_at(
    raw_dir: Path, roi: RoiParams, size: int, path: str, mask_paths: Sequence[str], margin: float
) -> bytes:
    """`prepare_file_png` with the margin of this image: the roi stage also writes the training
    images at a wider margin, for margin jitter."""
    at_margin = roi.model_copy(update={"margin": margin})
    return prepare_file_png(raw_dir, path, mask_paths, roi=at_margin, size=size)
