"""Test-time augmentation: the model's output averaged over the plain image and a few views of it
that keep the diagnosis (the mirror image, a slightly closer crop).

The evaluate stage and `medcls predict` both score through `mean_output`, so an image gets the same
probability from either. The baseline scores the plain image only.
"""

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

ZOOM_IN_KEEP = 0.9  # zoom_in keeps the central 90 % of each side, resized back to the input size


def flip_horizontal(images):
    return ops.flip(images, axis=2)


def zoom_in(images):
    height, width = images.shape[1], images.shape[2]
    crop_height, crop_width = round(height * ZOOM_IN_KEEP), round(width * ZOOM_IN_KEEP)
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    central = images[:, top : top + crop_height, left : left + crop_width, :]
    return ops.image.resize(central, (height, width), interpolation="bilinear")


VIEWS: dict[str, Callable] = {"flip_horizontal": flip_horizontal, "zoom_in": zoom_in}


def mean_output(model: keras.Model, images, views: Sequence[str] = ()) -> np.ndarray:
    """The model's output for float32 images (N, H, W, 3) in 0..255: of the images themselves, or
    with `views` (names in `VIEWS`) the mean over the plain images and each view of them."""
    outputs = [model(images, training=False)]
    outputs += [model(VIEWS[view](images), training=False) for view in views]
    plain, *viewed = [ops.convert_to_numpy(output) for output in outputs]
    return np.mean([plain, *viewed], axis=0, dtype=plain.dtype) if viewed else plain
