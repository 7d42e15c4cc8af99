"""Model outputs for TFRecord splits: one row per image, the single source the metrics are computed from."""

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from medcls import tfrecords


def predict_splits(
    model: keras.Model, tfrecord_dir: Path, splits: Sequence[str], batch_size: int = 64
) -> pd.DataFrame:
    """Probabilities for every image of the given splits, with its id, group and true label."""
    frames = []
    for split in splits:
        rows = {"id": [], "group": [], "label": [], "probability": []}
        for batch in tfrecords.read_split(tfrecord_dir, split).batch(batch_size):
            images = keras.ops.cast(batch["image"], "float32")
            rows["probability"].append(np.asarray(model(images, training=False)).reshape(-1))
            rows["label"].append(batch["label"].numpy())
            rows["id"] += [value.decode() for value in batch["id"].numpy()]
            rows["group"] += [value.decode() for value in batch["group"].numpy()]
        frame = pd.DataFrame(
            {
                "id": rows["id"],
                "group": rows["group"],
                "split": split,
                "label": np.concatenate(rows["label"]).astype(int),
                "probability": np.concatenate(rows["probability"]).astype(float),
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
