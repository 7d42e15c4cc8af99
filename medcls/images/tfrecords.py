"""Write prepared images as sharded TFRecords (`medcls.images.tfrecord_reader` reads them back).

Preparing once, ahead of training, makes every epoch and every experiment read identical, small,
already-cropped images, and lets DVC cache the result.

A complete output holds `index.json` (each split's shard names and record count), written last, in
a folder that is only renamed into place once complete; the reader checks the shards against it, so
an interrupted or damaged output is refused, never trained or evaluated on in part.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from functools import partial
from itertools import groupby, islice
from pathlib import Path
from typing import Any

import pandas as pd
import tensorflow as tf

from medcls.images.decode import mask_paths_of
from medcls.images.parallel import ordered_starmap
from medcls.images.roi import prepare_file_png_at
from medcls.params import RoiParams
from medcls.pipeline.errors import NO_SPACE, writing

INDEX = "index.json"
# The splits a model trains on (val too: cross-validation folds train on it), of which margin jitter
# needs wide copies
TRAINABLE_SPLITS = ("train", "val")

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
