"""Decode image and mask files into arrays, the same way for every stage and for prediction.

8-bit files decode exactly as they are stored. Files of any other depth (16-bit PNG or TIFF holding
10- to 16-bit data, float TIFF) keep their depth when decoded and are mapped to 8 bits by one rule,
`to_uint8`: the image's own darkest pixel becomes 0 and its brightest 255. Masks are read raw, at
their depth and with their alpha channel: for a clean mask any non-zero pixel is lesion (0/1,
0/255 or 0/65535 masks alike); colour, transparent and JPEG-compressed masks are decided by
`medcls.images.masks.lesion_pixels`.

Orientation: pixels are used as stored; an EXIF Orientation tag is ignored, for images and masks
alike. A mask is a pixel grid over its image: turning a JPEG scan upright but not its PNG mask (which
has no such tag) would put the lesion box elsewhere.

Size: with a `max_pixels` limit, the file's header is read first (`medcls.images.header`) and a
larger image is refused before a pixel is decoded, so one huge file cannot exhaust memory.

Runs in worker processes: it must never import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from medcls.images.header import image_size
from medcls.images.masks import lesion_pixels

MASK_SEPARATOR = ";"
# Images: any depth, colour or grey as stored, alpha dropped, EXIF orientation ignored.
_IMAGE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION
# Masks: as stored, alpha included (a transparent pixel is not lesion); IMREAD_UNCHANGED never applies
# EXIF orientation.
_MASK_FLAGS = cv2.IMREAD_UNCHANGED


class ImageDecodeError(ValueError):
    """A file that should be an image could not be decoded."""


class ImageTooLargeError(ValueError):
    """An image whose decoded pixels would exceed the limit; its message is the reject reason."""


class MaskMismatchError(ValueError):
    """A lesion mask that does not cover its image pixel for pixel, so its box would be meaningless."""


def mask_paths_of(cell: object) -> tuple[str, ...]:
    """Split a manifest `mask_paths` cell; pandas reads the empty cell of mask-less layouts as NaN."""
    return tuple(cell.split(MASK_SEPARATOR)) if isinstance(cell, str) and cell else ()


def check_decodable_size(path: Path, max_pixels: int) -> None:
    """Refuse, from its header alone, a file with more than `max_pixels` pixels (ImageTooLargeError)
    or one whose header is not that of an accepted format (ImageDecodeError)."""
    size = image_size(path)
    if size is None:
        raise ImageDecodeError(f"cannot decode image {path}: not a PNG, JPEG, BMP, TIFF or WebP file")
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"too large: {width}×{height} pixels (limit {max_pixels})")


def _decode(path: Path, flags: int = _IMAGE_FLAGS) -> np.ndarray:
    """The stored pixels at their own depth: (H, W) grey or (H, W, 3) BGR; with the mask flags
    also (H, W, 4) BGRA."""
    try:
        pixels = cv2.imdecode(np.fromfile(path, np.uint8), flags)
    except cv2.error:  # raised for empty files instead of returning None
        pixels = None
    if pixels is None:
        raise ImageDecodeError(f"cannot decode image {path}")
    return pixels


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels unchanged; any other depth stretched linearly so that the image's minimum is 0
    and its maximum 255 (over all channels, so colours keep their balance; a flat image is 0).

    Keeping only the high byte of a 16-bit file holding 12-bit data would leave it nearly black.
    """
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(pixels.shape, np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Decode any image file to RGB uint8 (grey expanded, alpha dropped) so every source looks alike."""
    pixels = to_uint8(_decode(path))
    code = cv2.COLOR_GRAY2RGB if pixels.ndim == 2 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


def read_masks(paths: Sequence[Path]) -> np.ndarray:
    """OR all masks of one image (datasets store each extra lesion in its own mask file). Each is
    read raw, at its own depth and with its alpha channel, and its lesion pixels decided by
    `lesion_pixels`."""
    masks = [lesion_pixels(_decode(path, _MASK_FLAGS)) for path in paths]
    if len({mask.shape for mask in masks}) > 1:
        raise MaskMismatchError(f"masks differ in size: {', '.join(map(str, paths))}")
    return np.logical_or.reduce(masks)


def check_mask_fits(mask: np.ndarray, image: np.ndarray) -> None:
    """The one rule for masks, applied by the manifest and by prediction alike: a mask must have
    its image's height and width, else its lesion box would lie elsewhere, or outside the image."""
    if mask.shape != image.shape[:2]:
        raise MaskMismatchError(
            f"the mask is {_size(mask)} pixels but the image is {_size(image)}: "
            "a lesion mask must have its image's size"
        )


def _size(pixels: np.ndarray) -> str:
    return f"{pixels.shape[1]}x{pixels.shape[0]}"

