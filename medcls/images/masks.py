"""Which pixels of a mask file are lesion, whatever the file's channels, colours and compression.

Masks arrive as clean 0/255 (or 0/1) greyscale PNGs, as colour annotations (BUS-UCLM: green benign,
red malignant), as palette or transparent PNGs (an annotation drawn on a transparent layer) and
sometimes JPEG-compressed, where the black background carries faint noise and edges blur. One rule
serves every layout (grey, grey + alpha, RGB, RGBA, palette): a pixel is lesion when it is not fully
transparent and its brightest colour channel reaches half of the brightest such value in the mask.
A coloured annotation counts whatever its hue, compression noise (far below half the peak) neither
turns the background into lesion nor widens the box to the whole image, a transparent pixel is
background whatever colour it hides, and for a clean two-valued mask the rule is exactly "any
non-zero pixel". An all-black or all-transparent mask stays empty.
"""

import numpy as np


def lesion_pixels(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool lesion map of a decoded mask of any integer or float dtype: (H, W) grey, (H, W, 3)
    colour or (H, W, 4) colour + alpha (OpenCV decodes grey + alpha and transparent palettes so)."""
    if mask.ndim == 3 and mask.shape[2] == 4:
        opaque = mask[..., 3] > 0
        brightest = np.where(opaque, mask[..., :3].max(axis=2), 0)
    else:
        brightest = mask.max(axis=2) if mask.ndim == 3 else mask
    peak = brightest.max(initial=0)
    if peak <= 0:
        return np.zeros(brightest.shape, bool)
    return brightest >= peak / 2
