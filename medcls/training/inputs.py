"""Input pipelines: batches of raw pixels and labels from the TFRecord examples.

Images stay float32 in 0..255 all the way to the model, which preprocesses them itself.
"""

from collections.abc import Mapping

import keras
import tensorflow as tf

SHUFFLE_BUFFER = 8192  # holds either training split whole, so shuffling is a true permutation


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
