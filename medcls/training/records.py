"""The images a model trains and validates on: a dataset's train and val splits, or for one
cross-validation fold the train and val images of every other fold and the fold's own, picked by id
from both splits' records. Either, with margin jitter, also as their wide copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from medcls.data import splitting
from medcls.images import tfrecord_reader, tfrecords
from medcls.training import inputs


def _records_of(split: str, wide: bool) -> str:
    """The records of `split`, or with `wide` its copies cropped for margin jitter."""
    return tfrecords.wide(split) if wide else split


class TrainingRecords:
    """The "train" and "val" roles of one model: whole splits, or with `fold_members` (the rows of
    each role, `splitting.fold_members`) a fold's images."""

    def __init__(
        self, tfrecord_dir: Path, fold_members: dict[str, pd.DataFrame] | None = None
    ) -> None:
        self.tfrecord_dir, self.fold_members = Path(tfrecord_dir), fold_members

    @classmethod
    def of(cls, tfrecord_dir: Path, split_csv: Path, fold: int | None) -> TrainingRecords:
        """The records of the dataset's model (`fold` None) or of a fold's, whose members the split
        table `split_csv` lists."""
        if fold is None:
            return cls(tfrecord_dir)
        rows = pd.read_csv(split_csv, keep_default_na=False)
        return cls(tfrecord_dir, splitting.fold_members(rows, fold))

    def training_labels(self) -> np.ndarray:
        if self.fold_members is None:
            return tfrecord_reader.read_labels(self.tfrecord_dir, "train")
        return self.fold_members["train"]["label"].to_numpy()

    def read(self, role: str, wide: bool = False) -> tf.data.Dataset:
        """The examples of `role` ("train" or "val"), or with `wide` their wide copies."""
        if self.fold_members is None:
            return tfrecord_reader.read_split(self.tfrecord_dir, _records_of(role, wide))
        splits = [_records_of(split, wide) for split in tfrecords.TRAINABLE_SPLITS]
        ids = self.fold_members[role]["path"].tolist()
        return tfrecord_reader.read_ids(self.tfrecord_dir, splits, ids)

    def batches(
        self,
        role: str,
        wide: bool = False,
        *,
        batch_size: int,
        image_size: int,
        budget: int,
        **options,
    ) -> tf.data.Dataset:
        """Batches of `role` (`options` as `inputs.make_batches` takes them): a whole split cached in
        RAM while it fits `budget` bytes, else streamed; a fold's images, picked by id, cached."""
        if self.fold_members is None:
            return inputs.split_batches(
                self.tfrecord_dir,
                _records_of(role, wide),
                batch_size=batch_size,
                image_size=image_size,
                budget=budget,
                **options,
            )
        return inputs.make_batches(
            self.read(role, wide), batch_size=batch_size, cache=True, **options
        )
