"""Input pipelines: batches of raw pixels and labels from the TFRecord examples.

Images stay float32 in 0..255 all the way to the model, which preprocesses them itself.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from medcls.images import tfrecord_reader

SHUFFLE_BUFFER = 8192  # holds either training split whole, so shuffling is a true permutation
STREAM_BUFFER = 4096  # records (PNG bytes) shuffled while streaming: about 60 MB at 224 px


def memory_budget(fraction: float) -> int:
    """`fraction` of this machine's physical memory, in bytes: what in-RAM caches may hold."""
    return int(fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def split_batches(
    tfrecord_dir: Path,
    split: str,
    *,
    batch_size: int,
    image_size: int,
    budget: int,
    augmenter: keras.Sequential | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """The batches of one split: its decoded images cached in RAM while they fit `budget` bytes,
    else read from the shards every epoch, so memory does not grow with the dataset.

    Without `shuffle` both give the same batches. With it, the cache is shuffled as a whole
    (a buffer of up to SHUFFLE_BUFFER images) and the stream by shard order and a bounded buffer
    (`tfrecord_reader.stream_split`): both seeded and reshuffled every epoch, but different orders.
    """
    records = tfrecord_reader.read_split(tfrecord_dir, split)
    cached = len(records) * image_size * image_size * 3 <= budget
    if shuffle and not cached:
        records = tfrecord_reader.stream_split(
            tfrecord_dir,
            split,
            seed=seed,
            buffer=STREAM_BUFFER,
            parallel_calls=parallel_calls(augmenter),
        )
        shuffle = False  # done by the stream
    return make_batches(
        records, batch_size=batch_size, augmenter=augmenter, shuffle=shuffle, seed=seed, cache=cached
    )


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

    calls = parallel_calls(augmenter)
    pairs = ds.map(_image_and_label, num_parallel_calls=calls)
    if cache:
        pairs = pairs.cache()
    if shuffle:
        pairs = pairs.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    batches = pairs.batch(batch_size).map(to_pixels, num_parallel_calls=calls)
    return batches.prefetch(tf.data.AUTOTUNE)


def parallel_calls(augmenter: keras.Sequential | None) -> int | None:
    """The parallel calls of a training pipeline's maps: one at a time (None) when `augmenter`
    draws random numbers under op determinism, else as many as tf.data chooses.

    tf.data would run those maps one at a time anyway: a pipeline with a stateful function (the
    augmenter's seed generator) is rewritten by its `make_deterministic` pass, which turns every
    parallel map into a sequential one, and TensorFlow 2.20's rewrite keeps an attribute
    (`use_unbounded_threadpool`) the sequential op does not have, which logs an
    `E0000 ... NodeDef mentions attribute use_unbounded_threadpool` line every training run.
    Sequential maps asked for directly give the same batches without it. (TensorFlow exports no
    public way to ask whether op determinism is on.)
    """
    if augmenter is not None and tf_config.is_op_determinism_enabled():
        return None
    return tf.data.AUTOTUNE


def _image_and_label(example: Mapping) -> tuple[tf.Tensor, tf.Tensor]:
    return example["image"], tf.reshape(tf.cast(example["label"], tf.float32), [1])
