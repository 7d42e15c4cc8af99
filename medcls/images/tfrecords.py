"""Write prepared images as sharded TFRecords and read them back as a `tf.data` pipeline.

Preparing once, ahead of training, makes every epoch and every experiment read identical, small,
already-cropped images, and lets DVC cache the result.

A complete output holds `index.json` (each split's shard names and record count), written last, in
a folder that is only renamed into place once complete; readers check the shards against it, so an
interrupted or damaged output is refused, never trained or evaluated on in part.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Collection, Iterator, Sequence
from functools import partial
from itertools import groupby, islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from medcls.images.decode import mask_paths_of
from medcls.images.parallel import ordered_starmap
from medcls.images.roi import prepare_file_png_at
from medcls.pipeline.config import RoiParams
from medcls.pipeline.errors import NO_SPACE, PipelineError, writing
from medcls.pipeline.paths import stage_writing_records

INDEX = "index.json"
# The splits a model trains on (val too: cross-validation folds train on it), of which margin jitter
# needs wide copies
TRAINABLE_SPLITS = ("train", "val")

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
    "group": tf.io.FixedLenFeature([], tf.string),
}


class IncompleteRecordsError(PipelineError):
    """TFRecords that are missing, partial or damaged: the roi stage must write them again."""


def wide(split: str) -> str:
    """The name of the records of `split` cropped at margin + margin_jitter: what training crops to
    a random margin (`medcls.training.augment.RandomMarginCrop`); `split` itself keeps `margin`."""
    return f"{split}_wide"


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
    roi: RoiParams,
    size: int,
    images_per_shard: int,
    workers: int,
) -> dict[str, int]:
    """Replace `out_dir` by `<split>-NNNNN-of-NNNNN.tfrecord` shards and their index; return images
    written per split: every image prepared as `roi` says, at `size` pixels.

    With `roi.margin_jitter`, the TRAINABLE_SPLITS are also written at margin + margin_jitter, as
    `wide(split)`; every split keeps its records at `margin`, byte for byte.

    The shards are written beside `out_dir` and renamed into place once the index is written, so an
    interrupted run leaves no partial `out_dir`. Within a split, records are ordered by content
    hash: deterministic, yet classes are interleaved across shards, so a bounded shuffle buffer at
    training time still sees both classes. Shards are byte-identical from run to run, so DVC skips
    training when a re-run changed no record.
    """
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        counts = _write_shards_and_index(
            _with_margins(split_df, roi.margin, roi.margin_jitter),
            raw_dir,
            staging,
            images_per_shard,
            workers,
            roi,
            size,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return counts


def _with_margins(split_df: pd.DataFrame, margin: float, margin_jitter: float) -> pd.DataFrame:
    """The rows with the margin each is cropped at, plus with `margin_jitter` the wide copies."""
    rows = split_df.assign(margin=margin)
    if not margin_jitter:
        return rows
    trainable = rows[rows["split"].isin(TRAINABLE_SPLITS)]
    wide_copies = trainable.assign(
        split=trainable["split"].map(wide), margin=margin + margin_jitter
    )
    return pd.concat([rows, wide_copies], ignore_index=True)


def _write_shards_and_index(
    split_df: pd.DataFrame,
    raw_dir: Path,
    out_dir: Path,
    per_shard: int,
    workers: int,
    roi: RoiParams,
    size: int,
) -> dict[str, int]:
    rows = split_df.sort_values(["split", "sha256", "path"], ignore_index=True)
    prepare = partial(prepare_file_png_at, raw_dir, roi, size)
    arguments = zip(rows["path"], rows["mask_paths"].map(mask_paths_of), rows["margin"])
    pngs = ordered_starmap(prepare, arguments, workers=workers)
    records = zip(rows.itertuples(), pngs, strict=True)  # strict: also lets the pool finish
    counts = {str(split): int(count) for split, count in rows["split"].value_counts().items()}
    index = {
        split: {
            "records": counts[split],
            "shards": _write_split(out_dir, split, split_records, counts[split], per_shard),
        }
        for split, split_records in groupby(records, key=lambda record: str(record[0].split))
    }
    with writing(out_dir / INDEX):
        (out_dir / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return counts


def _write_split(
    out_dir: Path, split: str, records: Iterator[tuple[Any, bytes]], count: int, per_shard: int
) -> list[str]:
    """Write one split's shards; return their names."""
    shards = math.ceil(count / per_shard)
    names = [shard_name(split, index, shards) for index in range(shards)]
    for name in names:
        try:
            with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
                for row, png in islice(records, per_shard):
                    writer.write(_example(row, png).SerializeToString(deterministic=True))
        except tf.errors.OpError as error:
            storage = _as_os_error(error, out_dir / name)
            if storage is None:
                raise
            raise storage from error
    return names


def _as_os_error(error: tf.errors.OpError, path: Path) -> OSError | None:
    """TensorFlow reports a full disk or a file-size limit as its own error type, its message
    ending in the system's description; as an OSError it gets the stages' one-line message."""
    for number in NO_SPACE:
        if error.message.endswith(os.strerror(number)):
            return OSError(number, os.strerror(number), str(path))
    return None


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decode one serialized record to `{"image": uint8 [H, W, 3], "label": int64, "id", "group"}`."""
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return {**features, "image": tf.io.decode_png(features["image"], channels=3)}


def read_split(tfrecord_dir: Path, split: str) -> tf.data.Dataset:
    """All shards of one split, in shard order, with a known length.

    The records are counted first (a cheap read, nothing decoded) and checked against the index;
    a dataset of known cardinality also lets Keras size its first epoch.
    """
    records, expected = _records(tfrecord_dir, split)
    try:
        count = int(records.reduce(np.int64(0), lambda total, _: total + 1))
    except tf.errors.OpError as error:
        raise _unreadable(tfrecord_dir, error) from None
    _check_count(tfrecord_dir, split, count, expected)
    return records.map(parse_example).apply(tf.data.experimental.assert_cardinality(count))


def read_ids(tfrecord_dir: Path, splits: Sequence[str], ids: Collection[str]) -> tf.data.Dataset:
    """The records of `splits` whose id is among `ids` (e.g. a cross-validation fold's share of
    train + val), in shard order, with a known length; iterating fails if an id has no record."""
    keys = tf.constant(sorted(ids))
    wanted = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, dtype=tf.int64)), 0
    )
    records = read_split(tfrecord_dir, splits[0])
    for split in splits[1:]:
        records = records.concatenate(read_split(tfrecord_dir, split))
    kept = records.filter(lambda record: wanted.lookup(record["id"]) == 1)
    return kept.apply(tf.data.experimental.assert_cardinality(len(ids)))


def read_labels(tfrecord_dir: Path, split: str) -> np.ndarray:
    """The labels of one split in record order, with no image decoded (e.g. for class weights)."""
    label_only = {"label": _FEATURES["label"]}
    records, expected = _records(tfrecord_dir, split)
    labels = records.map(
        lambda serialized: tf.io.parse_single_example(serialized, label_only)["label"]
    )
    try:
        values = np.fromiter(labels.as_numpy_iterator(), dtype=np.int64)
    except tf.errors.OpError as error:
        raise _unreadable(tfrecord_dir, error) from None
    _check_count(tfrecord_dir, split, len(values), expected)
    return values


def stream_split(
    tfrecord_dir: Path,
    split: str,
    *,
    seed: int,
    buffer: int,
    interleaved: int = 8,
    parallel_calls: int | None = tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """All records of one split in an order that changes every epoch, in memory bounded by
    `buffer` (not by the split's size): the shards in an order reshuffled every epoch, `interleaved`
    of them read at a time, then the records shuffled in a buffer of `buffer` serialized (still
    PNG-compressed) records. Seeded: the same seed gives the same sequence of epochs.

    The length is the index's; `read_split` is what checks the records against it. Records are
    parsed `parallel_calls` at a time (None: one at a time)."""
    paths, count = _shards(tfrecord_dir, split)
    shards = tf.data.Dataset.from_tensor_slices([str(path) for path in paths])
    records = shards.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(interleaved, len(paths)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    records = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    parsed = records.map(parse_example, num_parallel_calls=parallel_calls)
    return parsed.apply(tf.data.experimental.assert_cardinality(count))


def _records(tfrecord_dir: Path, split: str) -> tuple[tf.data.TFRecordDataset, int]:
    """The split's records, in shard order, and their count from the index."""
    paths, count = _shards(tfrecord_dir, split)
    return tf.data.TFRecordDataset([str(path) for path in paths]), count


def _shards(tfrecord_dir: Path, split: str) -> tuple[list[Path], int]:
    """The split's shards and record count from the index, once exactly those shards are on disk."""
    tfrecord_dir = Path(tfrecord_dir)
    index = _read_index(tfrecord_dir)
    if split not in index:
        raise IncompleteRecordsError(
            f"no TFRecords for split {split!r} in {tfrecord_dir} (it has "
            f"{', '.join(sorted(index))}); check the split name"
        )
    listed = index[split]["shards"]
    on_disk = sorted(path.name for path in tfrecord_dir.glob(f"{split}-*-of-*.tfrecord"))
    numbered = [shard_name(split, number, len(listed)) for number in range(len(listed))]
    if not on_disk == listed == numbered:
        raise _incomplete(
            tfrecord_dir, f"split {split!r} has shards {on_disk}, its index lists {listed}"
        )
    return [tfrecord_dir / name for name in listed], index[split]["records"]


def _read_index(tfrecord_dir: Path) -> dict:
    try:
        return json.loads((tfrecord_dir / INDEX).read_text())
    except FileNotFoundError:
        problem = f"no {INDEX} (written last)" if tfrecord_dir.is_dir() else "no such folder"
        raise _incomplete(tfrecord_dir, problem) from None
    except ValueError as error:
        raise _incomplete(tfrecord_dir, f"unreadable {INDEX} ({error})") from None


def _check_count(tfrecord_dir: Path, split: str, count: int, expected: int) -> None:
    if count != expected:
        raise _incomplete(
            tfrecord_dir, f"split {split!r} holds {count} records, its index says {expected}"
        )


def _unreadable(tfrecord_dir: Path, error: tf.errors.OpError) -> IncompleteRecordsError:
    return _incomplete(tfrecord_dir, f"unreadable shard ({' '.join(error.message.split())})")


def _incomplete(tfrecord_dir: Path, problem: str) -> IncompleteRecordsError:
    stage = stage_writing_records(tfrecord_dir)
    return IncompleteRecordsError(
        f"{tfrecord_dir}: {problem}: the {stage.partition('@')[0]} stage's output is missing, "
        f"incomplete or damaged; run `dvc repro {stage}` to write it again"
    )
