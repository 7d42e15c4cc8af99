"""Input pipelines: batches of raw pixels and labels from the TFRecord examples, and augmentation.

Images stay float32 in 0..255 all the way to the model, which preprocesses them itself.
"""

from collections.abc import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import ops

VALUE_RANGE = (0, 255)
FILL_MODE = "nearest"  # what the reports' ImageDataGenerator filled uncovered pixels with
SHUFFLE_BUFFER = 8192  # holds either training split whole, so shuffling is a true permutation


class _PixelAugmentation(keras.layers.Layer):
    """A seeded random pixel transform that keeps images in 0..255 (subclasses: `transform`)."""

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = True):
        if not training:
            return images
        return ops.clip(self.transform(images), *VALUE_RANGE)

    def _uniform(self, shape: tuple, low: float, high: float, images):
        return keras.random.uniform(shape, low, high, dtype=images.dtype, seed=self.seed_generator)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="medcls")
class RandomScale(_PixelAugmentation):
    """Multiplies each image by a factor drawn from `factor_range`: brightness as the reports'
    `brightness_range` did it (keras.layers.RandomBrightness adds an offset instead)."""

    def __init__(
        self, factor_range: tuple[float, float], seed: int | None = None, **kwargs
    ) -> None:
        super().__init__(seed, **kwargs)
        self.factor_range = tuple(factor_range)

    def transform(self, images):
        return images * self._uniform((ops.shape(images)[0], 1, 1, 1), *self.factor_range, images)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor_range": list(self.factor_range)}


@keras.saving.register_keras_serializable(package="medcls")
class RandomChannelShift(_PixelAugmentation):
    """Adds a random offset in [-intensity, intensity] to each channel of each image."""

    def __init__(self, intensity: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.intensity = intensity

    def transform(self, images):
        shape = (ops.shape(images)[0], 1, 1, ops.shape(images)[-1])
        return images + self._uniform(shape, -self.intensity, self.intensity, images)

    def get_config(self) -> dict:
        return {**super().get_config(), "intensity": self.intensity}


def _saturation_factor(change: float) -> tuple[float, float]:
    """RandomSaturation's factor f scales saturation by f / (1 - f): this range gives 1 ± change."""
    return (1 - change) / (2 - change), (1 + change) / (2 + change)


# Param key -> layer for its value; applied in this order (geometry first, then intensities).
AUGMENTATIONS: dict[str, Callable[..., keras.layers.Layer]] = {
    "flip_horizontal": lambda _, **common: keras.layers.RandomFlip("horizontal", **common),
    "flip_vertical": lambda _, **common: keras.layers.RandomFlip("vertical", **common),
    "rotation": lambda degrees, **common: keras.layers.RandomRotation(
        degrees / 360, fill_mode=FILL_MODE, **common
    ),
    "shift": lambda part, **common: keras.layers.RandomTranslation(
        part, part, fill_mode=FILL_MODE, **common
    ),
    "shear": lambda part, **common: keras.layers.RandomShear(
        part, part, fill_mode=FILL_MODE, **common
    ),
    "zoom": lambda part, **common: keras.layers.RandomZoom(
        part, part, fill_mode=FILL_MODE, **common
    ),
    "brightness": lambda bounds, **common: RandomScale(bounds, **common),
    "contrast": lambda part, **common: keras.layers.RandomContrast(
        part, value_range=VALUE_RANGE, **common
    ),
    "saturation": lambda part, **common: keras.layers.RandomSaturation(
        _saturation_factor(part), value_range=VALUE_RANGE, **common
    ),
    "channel_shift": lambda intensity, **common: RandomChannelShift(intensity, **common),
}


def build_augmenter(spec: Mapping, seed: int) -> keras.Sequential | None:
    """The random augmentations switched on in `spec` (0/false = off), or None when none is.

    Each layer gets its own seed so that, e.g., the two flips are drawn independently, and computes
    in float32 whatever the mixed-precision policy, as it runs on raw pixels in the input pipeline.
    """
    unknown = sorted(set(spec) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"augment: unknown keys {unknown}; known keys are {list(AUGMENTATIONS)}")
    layers = [
        make(spec[key], seed=seed + index, dtype="float32")
        for index, (key, make) in enumerate(AUGMENTATIONS.items())
        if spec.get(key)
    ]
    return keras.Sequential(layers, name="augmenter") if layers else None


def make_batches(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    augmenter: keras.Sequential | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = False,
) -> tf.data.Dataset:
    """(images float32 0..255 [B, H, W, 3], labels float32 [B, 1]) batches from example dicts.

    The cache holds uint8 pixels (a quarter of the float32 size); shuffling is seeded and differs
    every epoch.
    """

    def to_pixels(images, labels):
        images = tf.cast(images, tf.float32)
        return (images if augmenter is None else augmenter(images, training=True)), labels

    pairs = ds.map(_image_and_label, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        pairs = pairs.cache()
    if shuffle:
        pairs = pairs.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    batches = pairs.batch(batch_size).map(to_pixels, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _image_and_label(example: Mapping) -> tuple[tf.Tensor, tf.Tensor]:
    return example["image"], tf.reshape(tf.cast(example["label"], tf.float32), [1])


def labels_of(ds: tf.data.Dataset) -> np.ndarray:
    """The labels of an example-dict dataset, in order (e.g. for class weights)."""
    return np.fromiter(ds.map(lambda example: example["label"]).as_numpy_iterator(), dtype=np.int64)
