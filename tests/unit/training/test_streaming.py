"""Memory that does not grow with the dataset: splits beyond the memory budget are streamed from
their shards, backbone features beyond it are kept on disk.

Streaming and the in-RAM cache cannot give identical *shuffled* batches: the cache is shuffled as a
whole (a buffer that holds the split), the stream by shard order and a bounded buffer, two different
permutations by design. What is guaranteed, and tested: unshuffled batches are identical; shuffled,
every epoch holds each image once, the order (the shards' order too) changes every epoch, and the
same seed gives the same sequence of epochs. Cached features are identical in RAM and on disk, shuffled or not.
"""

from __future__ import annotations

import math
from itertools import groupby
from pathlib import Path

import keras
import numpy as np
import pytest

from medcls.images.tfrecord_reader import read_split, stream_split
from medcls.pipeline.paths import DatasetPaths
from medcls.training.fit import cached_features
from medcls.training.inputs import split_batches
from tests.support.builders import NAME, ROI, make_project, one_dataset_params
from tests.support.training import batches

SIZE = ROI["size"]  # the image size make_project's TFRecords have


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory) -> Path:
    """TFRecords whose train split (17 images) is in shards of 2."""
    project = make_project(
        tmp_path_factory.mktemp("streaming") / "p", one_dataset_params(), images_per_shard=2
    )
    return project / DatasetPaths(NAME).tfrecords


def epochs(tfrecords: Path, count: int, *, budget: float, seed: int = 0, shuffle: bool = True):
    """The ids (in order) and pixels of `count` epochs of the train split's batches."""
    made = split_batches(
        tfrecords, "train", batch_size=3, image_size=SIZE, budget=budget, shuffle=shuffle, seed=seed
    )
    ids, pixels = [], []
    for _ in range(count):
        images = np.concatenate([images for images, _ in made])
        pixels.append(images)
        ids.append([image.tobytes() for image in images])  # the pixels identify the image
    return ids, pixels


def test_unshuffled_batches_are_identical_streamed_or_cached(tfrecords):
    _, cached = epochs(tfrecords, 2, budget=math.inf, shuffle=False)
    _, streamed = epochs(tfrecords, 2, budget=0, shuffle=False)
    for cached_epoch, streamed_epoch in zip(cached, streamed, strict=True):
        np.testing.assert_array_equal(cached_epoch, streamed_epoch)


def test_a_streamed_epoch_holds_every_image_once_in_a_new_order(tfrecords):
    (reference,), _ = epochs(tfrecords, 1, budget=math.inf, shuffle=False)
    streamed, _ = epochs(tfrecords, 3, budget=0)
    for epoch in streamed:
        assert sorted(epoch) == sorted(reference)
    assert len({tuple(epoch) for epoch in streamed}) == 3


def test_the_stream_reshuffles_its_shard_order_every_epoch(tfrecords):
    """Without record shuffling (a buffer of one) or interleaving, an epoch is whole shards one
    after another: their order, not only a buffer larger than the split, must change every epoch."""
    in_order = [example["id"] for example in read_split(tfrecords, "train").as_numpy_iterator()]
    shard_of = {record: index // 2 for index, record in enumerate(in_order)}  # shards of 2
    stream = stream_split(tfrecords, "train", seed=0, buffer=1, interleaved=1)
    orders = []
    for _ in range(3):
        shards = [shard_of[example["id"]] for example in stream.as_numpy_iterator()]
        assert sorted(shards) == sorted(shard_of.values())
        orders.append(tuple(shard for shard, _ in groupby(shards)))  # in the order they were read
        assert sorted(orders[-1]) == sorted(set(shards))  # each shard read whole, once
    assert len(set(orders)) == 3


def test_streaming_repeats_for_a_seed_and_differs_between_seeds(tfrecords):
    first, _ = epochs(tfrecords, 2, budget=0, seed=1)
    again, _ = epochs(tfrecords, 2, budget=0, seed=1)
    other, _ = epochs(tfrecords, 2, budget=0, seed=2)
    assert first == again
    assert first != other


def test_the_budget_decides_cache_or_stream(tfrecords):
    split_bytes = len(read_split(tfrecords, "train")) * SIZE * SIZE * 3
    cached, _ = epochs(tfrecords, 1, budget=split_bytes, seed=3)
    streamed, _ = epochs(tfrecords, 1, budget=split_bytes - 1, seed=3)
    assert cached != streamed  # two different shuffles: the whole split vs shards and a buffer


def extractor() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, keras.layers.Conv2D(2, 3, strides=4)(inputs))


@pytest.mark.parametrize("shuffle", [False, True])
def test_features_beyond_the_budget_are_on_disk_and_give_the_same_batches(tmp_path, shuffle):
    model, spill = extractor(), tmp_path / "tmp" / "train.features"
    keras.utils.set_random_seed(0)
    in_ram = cached_features(model, batches(0), shuffle=shuffle, spill_to=spill)
    keras.utils.set_random_seed(0)
    on_disk = cached_features(model, batches(0), shuffle=shuffle, budget=0, spill_to=spill)
    assert spill.stat().st_size == 8 * 4 * 4 * 2 * 4  # 8 images of 4x4x2 float32 features
    for _ in range(2):  # two epochs: reshuffled alike
        for (ram_features, ram_labels), (disk_features, disk_labels) in zip(
            in_ram, on_disk, strict=True
        ):
            np.testing.assert_array_equal(ram_features, disk_features)
            np.testing.assert_array_equal(ram_labels, disk_labels)
