"""Which pixels of a mask file are lesion, whatever the file's colours and compression.

Masks arrive as clean 0/255 (or 0/1) greyscale PNGs, as colour annotations (BUS-UCLM: green benign,
red malignant) and sometimes JPEG-compressed, where the black background carries faint noise and
edges blur. A pixel is lesion when its brightest channel reaches half of the mask's brightest
value: a coloured annotation counts whatever its hue, compression noise (far below half the peak)
neither turns the background into lesion nor widens the box to the whole image, and for a clean
two-valued mask the rule is exactly "any non-zero pixel". An all-black mask stays empty.
"""

import numpy as np


def lesion_pixels(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool lesion map of a decoded (H, W) or (H, W, C) mask of any integer or float dtype."""
    brightest = mask.max(axis=2) if mask.ndim == 3 else mask
    peak = brightest.max(initial=0)
    if peak <= 0:
        return np.zeros(brightest.shape, bool)
    return brightest >= peak / 2
