"""Model outputs for TFRecord splits: one row per image, the single source the metrics are computed from."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from medcls.data.splitting import fold_members
from medcls.evaluation.splits import OUT_OF_FOLD, ensemble_split, external_split
from medcls.evaluation.tta import mean_output
from medcls.images import tfrecord_reader

# The predictions file is kept in git for commit-to-commit comparisons: image ids, labels and
# probabilities only (no patient/group ids), so it stays small.
COMMITTED_COLUMNS = ["id", "split", "fold", "label", "probability", "baseline_probability"]


def model_outputs(
    model: keras.Model,
    tfrecord_dir: Path,
    split: str,
    batch_size: int = 64,
    views: Sequence[str] = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows (id, group, split, label) of one split and the model's output for each, in order
    (with test-time augmentation `views`: the mean over the plain image and those views)."""
    records = tfrecord_reader.read_split(tfrecord_dir, split)
    return record_outputs(model, records, split, batch_size, views)


def record_outputs(
    model: keras.Model,
    records: tf.data.Dataset,
    split: str,
    batch_size: int = 64,
    views: Sequence[str] = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows (id, group, label, `split`) of TFRecord examples and the model's output for each
    (averaged over the plain image and `views`)."""
    rows, outputs = {"id": [], "group": [], "label": []}, []
    for batch in records.batch(batch_size):
        outputs.append(mean_output(model, keras.ops.cast(batch["image"], "float32"), views))
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
    model: keras.Model,
    tfrecord_dir: Path,
    splits: Sequence[str],
    batch_size: int = 64,
    views: Sequence[str] = (),
) -> pd.DataFrame:
    """Probabilities for every image of the given splits, with its id, group and true label."""
    frames = []
    for split in splits:
        frame, probabilities = model_outputs(model, tfrecord_dir, split, batch_size, views)
        frames.append(frame.assign(probability=probabilities.reshape(-1).astype(float)))
    return pd.concat(frames, ignore_index=True)


def predict_with_external(
    model: keras.Model,
    tfrecord_dir: Path,
    splits: Sequence[str],
    external: Mapping[str, Path],
    batch_size: int = 64,
    views: Sequence[str] = (),
) -> pd.DataFrame:
    """`predict_splits`, plus the `test` records of each external test set ({dataset: TFRecord
    folder}) with their split named `external:<dataset>`."""
    frames = [predict_splits(model, tfrecord_dir, splits, batch_size, views)] + [
        predict_splits(model, folder, ["test"], batch_size, views).assign(
            split=external_split(name)
        )
        for name, folder in external.items()
    ]
    return pd.concat(frames, ignore_index=True)


def fold_records(tfrecord_dir: Path, split_df: pd.DataFrame, fold: int) -> tf.data.Dataset:
    """The train + val records of cross-validation fold `fold`: those its model validated on."""
    ids = fold_members(split_df, fold)["val"]["path"].tolist()
    return tfrecord_reader.read_ids(tfrecord_dir, ["train", "val"], ids)


def cross_validated_predictions(
    models: Sequence[keras.Model],
    tfrecord_dir: Path,
    split_df: pd.DataFrame,
    batch_size: int = 64,
    external: Mapping[str, Path] | None = None,
    views: Sequence[str] = (),
) -> pd.DataFrame:
    """Every train + val image predicted by the fold model that did not see it (split
    `out_of_fold`, with its `fold`), and every test image by the ensemble, the mean probability of
    the fold models (split `ensemble_test`); so is every image of the `external` test sets
    ({dataset: TFRecord folder}; split `ensemble_external:<dataset>`)."""
    out_of_fold = []
    for fold, model in enumerate(models):
        records = fold_records(tfrecord_dir, split_df, fold)
        rows, outputs = record_outputs(model, records, OUT_OF_FOLD, batch_size, views)
        out_of_fold.append(
            rows.assign(
                fold=pd.array([fold] * len(rows), dtype="Int64"),  # stays an int beside rows without
                probability=outputs.reshape(-1).astype(float),
            )
        )
    scored_sets = {"test": tfrecord_dir} | {
        external_split(name): folder for name, folder in (external or {}).items()
    }
    ensembles = []
    for split, folder in scored_sets.items():
        each = [predict_splits(model, folder, ["test"], batch_size, views) for model in models]
        ensembles.append(
            each[0].assign(
                split=ensemble_split(split),
                probability=np.mean([rows["probability"] for rows in each], axis=0),
            )
        )
    return pd.concat([*out_of_fold, *ensembles], ignore_index=True)
