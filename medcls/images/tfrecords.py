"""Write prepared images as sharded TFRecords and read them back as a `tf.data` pipeline.

Preparing once, ahead of training, makes every epoch and every experiment read identical, small,
already-cropped images, and lets DVC cache the result.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from functools import partial
from itertools import groupby, islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from medcls.images.decode import mask_paths_of
from medcls.images.parallel import ordered_starmap
from medcls.images.roi import prepare_file_png

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
    "group": tf.io.FixedLenFeature([], tf.string),
}


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(row: Any, png: bytes) -> tf.train.Example:
    """One prepared image (PNG bytes) with its label and ids."""
    features = {
        "image": _bytes_feature(png),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row.label)])),
        "id": _bytes_feature(str(row.path).encode()),
        "group": _bytes_feature(str(row.group).encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))


def write_tfrecords(
    split_df: pd.DataFrame,
    raw_dir: Path,
    out_dir: Path,
    *,
    images_per_shard: int,
    workers: int,
    size: int,
    use_mask: bool,
    margin: float,
    mask_background: bool,
    keep_aspect: bool,
) -> dict[str, int]:
    """Recreate `out_dir` with `<split>-NNNNN-of-NNNNN.tfrecord` shards; return images written per split.

    Within a split, records are ordered by content hash: deterministic, yet classes are interleaved
    across shards, so a bounded shuffle buffer at training time still sees both classes. Shards are
    byte-identical from run to run, so DVC skips training when a re-run changed no record.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    rows = split_df.sort_values(["split", "sha256", "path"], ignore_index=True)
    prepare = partial(
        prepare_file_png,
        raw_dir,
        size=size,
        use_mask=use_mask,
        margin=margin,
        mask_background=mask_background,
        keep_aspect=keep_aspect,
    )
    arguments = zip(rows["path"], rows["mask_paths"].map(mask_paths_of))
    pngs = ordered_starmap(prepare, arguments, workers=workers)
    records = zip(rows.itertuples(), pngs, strict=True)  # strict: also lets the pool finish
    counts = {str(split): int(count) for split, count in rows["split"].value_counts().items()}
    for split, split_records in groupby(records, key=lambda record: str(record[0].split)):
        _write_split(out_dir, split, split_records, counts[split], images_per_shard)
    return counts


def _write_split(
    out_dir: Path, split: str, records: Iterator[tuple[Any, bytes]], count: int, per_shard: int
) -> None:
    shards = math.ceil(count / per_shard)
    for index in range(shards):
        with tf.io.TFRecordWriter(str(out_dir / shard_name(split, index, shards))) as writer:
            for row, png in islice(records, per_shard):
                writer.write(_example(row, png).SerializeToString(deterministic=True))


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decode one serialized record to `{"image": uint8 [H, W, 3], "label": int64, "id", "group"}`."""
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return {**features, "image": tf.io.decode_png(features["image"], channels=3)}


def read_split(tfrecord_dir: Path, split: str) -> tf.data.Dataset:
    """All shards of one split, in shard order, with a known length.

    The records are counted first (a cheap read, nothing decoded): a dataset of known cardinality
    lets Keras size its first epoch instead of running into the end of the data and warning.
    """
    records = _records(tfrecord_dir, split)
    count = int(records.reduce(np.int64(0), lambda total, _: total + 1))
    return records.map(parse_example).apply(tf.data.experimental.assert_cardinality(count))


def read_labels(tfrecord_dir: Path, split: str) -> np.ndarray:
    """The labels of one split in record order, with no image decoded (e.g. for class weights)."""
    label_only = {"label": _FEATURES["label"]}
    labels = _records(tfrecord_dir, split).map(
        lambda serialized: tf.io.parse_single_example(serialized, label_only)["label"]
    )
    return np.fromiter(labels.as_numpy_iterator(), dtype=np.int64)


def _records(tfrecord_dir: Path, split: str) -> tf.data.TFRecordDataset:
    shards = sorted(Path(tfrecord_dir).glob(f"{split}-*-of-*.tfrecord"))
    if not shards:
        raise FileNotFoundError(
            f"no TFRecord shards for split {split!r} in {tfrecord_dir} "
            f"(expected {shard_name(split, 0, 1)} etc.); check the split name, "
            "or run `dvc repro` to write them"
        )
    return tf.data.TFRecordDataset([str(shard) for shard in shards])
