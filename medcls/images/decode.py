"""Decode image and mask files into arrays, the same way for every stage and for prediction.

Runs in worker processes: it must never import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

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
