"""Per-image preparation: crop to the lesion's region of interest, square up and resize.

This module runs inside worker processes, so it must never import TensorFlow (workers are spawned and
importing TF there would cost seconds and gigabytes per worker). `prepare_file` is the single
preprocessing entry point, shared by the TFRecord writer and prediction, so training and inference can
never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from medcls.images.decode import check_mask_fits, read_image, read_masks


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
        check_mask_fits(mask, image)
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


def prepare_file_png_at(
    raw_dir: Path, roi_params: dict, path: str, mask_paths: Sequence[str], margin: float
) -> bytes:
    """`prepare_file_png` with the margin of this image: the roi stage also writes the training
    images at a wider margin, for margin jitter."""
    return prepare_file_png(raw_dir, path, mask_paths, **{**roi_params, "margin": margin})
