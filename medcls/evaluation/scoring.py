"""Model outputs for TFRecord splits: one row per image, the single source the metrics are computed from."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from medcls.evaluation.metrics import external_split
from medcls.images import tfrecords

# The predictions file is kept in git for commit-to-commit comparisons: image ids, labels and
# probabilities only (no patient/group ids), so it stays small.
COMMITTED_COLUMNS = ["id", "split", "label", "probability", "baseline_probability"]


def model_outputs(
    model: keras.Model, tfrecord_dir: Path, split: str, batch_size: int = 64
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows (id, group, split, label) of one split and the model's output for each, in order."""
    rows, outputs = {"id": [], "group": [], "label": []}, []
    for batch in tfrecords.read_split(tfrecord_dir, split).batch(batch_size):
        images = keras.ops.cast(batch["image"], "float32")
        outputs.append(keras.ops.convert_to_numpy(model(images, training=False)))
        rows["label"].append(batch["label"].numpy())
        rows["id"] += [value.decode() for value in batch["id"].numpy()]
        rows["group"] += [value.decode() for value in batch["group"].numpy()]
    frame = pd.DataFrame(
        {
            "id": rows["id"],
            "group": rows["group"],
            "split": split,
            "label": np.concatenate(rows["label"]).astype(int),
        }
    )
    return frame, np.concatenate(outputs)


def predict_splits(
    model: keras.Model, tfrecord_dir: Path, splits: Sequence[str], batch_size: int = 64
) -> pd.DataFrame:
    """Probabilities for every image of the given splits, with its id, group and true label."""
    frames = []
    for split in splits:
        frame, probabilities = model_outputs(model, tfrecord_dir, split, batch_size)
        frames.append(frame.assign(probability=probabilities.reshape(-1).astype(float)))
    return pd.concat(frames, ignore_index=True)


def predict_with_external(
    model: keras.Model,
    tfrecord_dir: Path,
    splits: Sequence[str],
    external: Mapping[str, Path],
    batch_size: int = 64,
) -> pd.DataFrame:
    """`predict_splits`, plus the `test` records of each external test set ({dataset: TFRecord
    folder}) with their split named `external:<dataset>`."""
    frames = [predict_splits(model, tfrecord_dir, splits, batch_size)] + [
        predict_splits(model, folder, ["test"], batch_size).assign(split=external_split(name))
        for name, folder in external.items()
    ]
    return pd.concat(frames, ignore_index=True)
