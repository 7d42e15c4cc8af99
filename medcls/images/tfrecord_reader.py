"""Read the TFRecords the roi and external stages write (`medcls.images.tfrecords`): every
reading of records goes through here, checked against the folder's index, so an interrupted or
damaged output is refused, never trained or evaluated on in part.

`read_split` (a whole split, in shard order), `read_ids` (chosen records, e.g. a fold's),
`read_labels` (labels only, nothing decoded) and `stream_split` (a split reshuffled every epoch in
bounded memory) give examples `{"image": uint8 [H, W, 3], "label", "id", "group"}`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from medcls.images.tfrecords import INDEX, shard_name
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import stage_writing_records

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
    "group": tf.io.FixedLenFeature([], tf.string),
}


class IncompleteRecordsError(PipelineError):
    """TFRecords that are missing, partial or damaged: the roi stage must write them again."""


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
