"""Grad-CAM heat maps: which part of its input crop made the classifier decide as it did.

The map is taken at the classifier's last layer with a spatial (4-D) output before pooling: the
backbone itself, or the last head block (PDF, SE) after it. That works alike for every backbone kind
(Keras application, `.keras` file, small CNN), as the backbone is one nested layer of the classifier.

Gradients are those of the decision's log-odds (the logit for a positive decision, its negative for
a negative one), not of the probability: a confident sigmoid saturates at exactly 1.0 in float32 and
its gradient would vanish. The gradient needs TensorFlow (the pipeline's backend); the rest is
`keras.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops
from matplotlib.figure import Figure

from medcls.evaluation import metrics
from medcls.evaluation.cases import thumbnail_name
from medcls.images import tfrecord_reader
from medcls.model.classifier import layer_chain, split_after

BATCH_SIZE = 32
OUTCOMES = ("TP", "FN", "TN", "FP")  # positives first, each with its correct decision first
PANEL_INCHES = 2.4
HEAT_ALPHA = 0.6  # opacity of the hottest pixels


class Panel(NamedTuple):
    """One overlay of a figure: the model's input crop, its heat map and a title."""

    image: np.ndarray
    heatmap: np.ndarray
    title: str


def last_spatial_layer(model: keras.Model) -> keras.layers.Layer:
    """The classifier's last top-level layer whose output is a 4-D feature map."""
    spatial = [layer for layer in layer_chain(model) if len(layer.output.shape) == 4]
    if not spatial:
        raise ValueError(f"{model.name}: no layer with a spatial (4-D) output for Grad-CAM")
    return spatial[-1]


def _split_models(model: keras.Model) -> tuple[keras.Model, keras.Model, keras.layers.Dense]:
    """(inputs -> feature map, feature map -> input of the output layer, the output layer)."""
    output_layer = layer_chain(model)[-1]
    if not (
        isinstance(output_layer, keras.layers.Dense)
        and output_layer.activation is keras.activations.sigmoid
    ):
        raise ValueError(
            f"{model.name}: Grad-CAM expects a classifier ending in a sigmoid Dense layer, as "
            f"build_classifier makes; its last layer is {output_layer.name!r}"
        )
    to_features, to_hidden = split_after(model, last_spatial_layer(model), with_output_layer=False)
    return to_features, to_hidden, output_layer


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    threshold: float = 0.5,
    decisions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps (N, H, W) in [0, 1] over the input images, and the probabilities (N,).

    `images` are model inputs (N, H, W, 3) in 0..255. Each map explains the model's decision at
    `threshold`, or the given `decisions` (N booleans, e.g. an ensemble's); a map without
    positive evidence is all zeros.
    """
    to_features, to_hidden, output_layer = _split_models(model)
    heatmaps, probabilities = [], []
    for start in range(0, len(images), BATCH_SIZE):
        batch = ops.cast(images[start : start + BATCH_SIZE], "float32")
        features = to_features(batch, training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)  # the backbone is frozen: nothing upstream is watched for us
            hidden = ops.cast(to_hidden(features, training=False), "float32")
            logits = ops.squeeze(ops.matmul(hidden, output_layer.kernel) + output_layer.bias, -1)
            positive = (
                metrics.predict_positive(ops.sigmoid(logits), threshold)
                if decisions is None
                else decisions[start : start + BATCH_SIZE]
            )
            decision_score = ops.sum(ops.where(positive, logits, -logits))
        gradients = ops.cast(tape.gradient(decision_score, features), "float32")
        heatmaps.append(_normalised_map(ops.cast(features, "float32"), gradients, batch.shape[1:3]))
        probabilities.append(ops.convert_to_numpy(ops.sigmoid(logits)))
    return np.concatenate(heatmaps), np.concatenate(probabilities).astype(float)


def ensemble_grad_cam(
    models: keras.Model | Sequence[keras.Model],
    images: np.ndarray,
    threshold: float = 0.5,
    decisions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`grad_cam` of a model, or of an ensemble (cross-validation folds): the mean probability
    decides at `threshold` unless `decisions` are given, and the map is the mean of every member's
    map for that decision, scaled to a peak of 1."""
    members = [models] if isinstance(models, keras.Model) else list(models)
    if len(members) == 1:
        return grad_cam(members[0], images, threshold, decisions)
    probabilities = np.mean([grad_cam(member, images, threshold)[1] for member in members], axis=0)
    if decisions is None:
        decisions = metrics.predict_positive(probabilities, threshold)
    maps = np.mean([grad_cam(member, images, threshold, decisions)[0] for member in members], axis=0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0), probabilities


def _first(models: keras.Model | Sequence[keras.Model]) -> keras.Model:
    return models if isinstance(models, keras.Model) else models[0]


def _normalised_map(features, gradients, size: tuple[int, int]) -> np.ndarray:
    """Channels weighted by their mean gradient, summed, ReLU, resized to the input, scaled to a
    peak of 1."""
    weights = ops.mean(gradients, axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.sum(weights * features, axis=-1, keepdims=True))
    cam = ops.image.resize(cam, size, interpolation="bilinear")
    peak = ops.max(cam, axis=(1, 2, 3), keepdims=True)
    cam = ops.where(peak > 0, cam / ops.maximum(peak, 1e-12), 0.0)
    return ops.convert_to_numpy(ops.clip(cam[..., 0], 0.0, 1.0))


def save_overlays(
    rows: Sequence[Sequence[Panel | None]],
    out_png: Path,
    title: str,
    row_labels: Sequence[str] = (),
) -> None:
    """A grid of heat maps over their images; a `None` cell says "none" (e.g. no false positives)."""
    columns = max(len(row) for row in rows)
    figure = Figure(
        figsize=(PANEL_INCHES * columns, PANEL_INCHES * len(rows) + 0.4), layout="constrained"
    )
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for row_index, row in enumerate(rows):
        for column, panel in enumerate(row):
            axis = axes[row_index, column]
            if panel is None:
                axis.text(0.5, 0.5, "none", ha="center", va="center", color="grey")
            else:
                axis.imshow(panel.image)
                # opacity follows the heat, so the image stays readable where there is no evidence
                axis.imshow(
                    panel.heatmap, cmap="jet", alpha=HEAT_ALPHA * panel.heatmap, vmin=0, vmax=1
                )
                axis.set_title(panel.title, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.spines[:].set_visible(False)
    for axis, label in zip(axes[:, 0], row_labels):
        axis.set_ylabel(label, fontsize=9)
    figure.suptitle(
        f"{title}\n(evidence for each image's decision; no overlay: none found)", fontsize=9
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100)


def save_image_overlays(
    model: keras.Model | Sequence[keras.Model],
    images: np.ndarray,
    titles: Sequence[str],
    threshold: float,
    out_png: Path,
    columns: int = 4,
    decisions: np.ndarray | None = None,
) -> None:
    """Grad-CAM of prepared model inputs (of a model or an ensemble), one titled panel each,
    `columns` to a row; each map explains `decisions` (N booleans), by default the plain image's
    at `threshold`."""
    heatmaps, _ = ensemble_grad_cam(model, images, threshold, decisions)
    panels = [Panel(*panel) for panel in zip(images, heatmaps, titles, strict=True)]
    rows = [panels[start : start + columns] for start in range(0, len(panels), columns)]
    layer = last_spatial_layer(_first(model)).name
    save_overlays(rows, out_png, f"Grad-CAM at layer {layer!r}, threshold {threshold:.3f}")


def outcome_sample(
    predictions: pd.DataFrame, threshold: float, *, seed: int, per_outcome: int, split: str = "test"
) -> pd.DataFrame:
    """Up to `per_outcome` rows of `split` per outcome (TP, FN, TN, FP), drawn with `seed` from
    rows sorted by id, so the same predictions always give the same sample."""
    rows = predictions[predictions["split"] == split].sort_values("id", ignore_index=True)
    positive = metrics.predict_positive(rows["probability"].to_numpy(), threshold)
    actual = rows["label"].to_numpy() == 1
    outcome = np.where(actual, np.where(positive, "TP", "FN"), np.where(positive, "FP", "TN"))
    rows = rows.assign(outcome=outcome)
    return pd.concat(
        [
            group.sample(n=min(per_outcome, len(group)), random_state=seed)
            for _, group in rows.groupby("outcome", sort=False)
        ],
        ignore_index=True,
    )


def _records_by_id(tfrecord_dir: Path, split: str, ids: set[str]) -> dict[str, np.ndarray]:
    """The prepared images of `ids` in one split's TFRecords: exactly what the model was scored on."""
    found = {}
    for record in tfrecord_reader.read_split(tfrecord_dir, split).as_numpy_iterator():
        key = record["id"].decode()
        if key in ids:
            found[key] = record["image"]
            if len(found) == len(ids):
                break
    missing = sorted(ids - set(found))
    if missing:
        raise ValueError(
            f"{tfrecord_dir}: no {split} record for {missing[:3]}; the predictions and the "
            "TFRecords come from different runs (run `dvc repro`)"
        )
    return found


def save_gradcam_grid(
    model: keras.Model | Sequence[keras.Model],
    predictions: pd.DataFrame,
    tfrecord_dir: Path,
    threshold: float,
    out_png: Path,
    *,
    classes: Sequence[str],
    seed: int,
    per_outcome: int = 2,
    split: str = "test",
) -> None:
    """Grad-CAM of a seeded sample of test images: one row per outcome (TP, FN, TN, FP), up to
    `per_outcome` images each, overlaid on the model's input crop, probability in each title.

    `predictions` is the evaluate stage's table (id, split, label, probability); its `split` rows
    are the test images as the model, or the ensemble of fold models, scored them. Each map
    explains the decision reported there (with test-time augmentation or a temperature, that of
    the reported probability), computed on the plain image.
    """
    sample = outcome_sample(predictions, threshold, seed=seed, per_outcome=per_outcome, split=split)
    by_id = _records_by_id(tfrecord_dir, "test", set(sample["id"]))
    images = np.stack([by_id[key] for key in sample["id"]])
    decisions = sample["outcome"].isin(["TP", "FP"]).to_numpy()
    heatmaps, _ = ensemble_grad_cam(model, images, threshold, decisions)
    panels = [
        Panel(image, heatmap, f"{Path(row.id).name}\np = {row.probability:.3f}")
        for row, image, heatmap in zip(sample.itertuples(), images, heatmaps, strict=True)
    ]
    rows = [
        [panel for panel, outcome in zip(panels, sample["outcome"]) if outcome == wanted] or [None]
        for wanted in OUTCOMES
    ]
    layer = last_spatial_layer(_first(model)).name
    save_overlays(
        rows,
        out_png,
        f"Grad-CAM at layer {layer!r}: test sample, threshold {threshold:.3f}",
        row_labels=[_outcome_label(outcome, classes) for outcome in OUTCOMES],
    )


def _outcome_label(outcome: str, classes: Sequence[str]) -> str:
    """E.g. "FN: Malignant called Benign"."""
    actual = 1 if outcome in ("TP", "FN") else 0
    predicted = actual if outcome in ("TP", "TN") else 1 - actual
    return f"{outcome}: {classes[actual]} called {classes[predicted]}"


def save_case_thumbnails(
    model: keras.Model | Sequence[keras.Model],
    rows: pd.DataFrame,
    tfrecord_dir: Path,
    threshold: float,
    out_dir: Path,
    *,
    classes: Sequence[str],
    split: str = "test",
) -> list[Path]:
    """One Grad-CAM thumbnail per row (id, label, probability) of `split`'s records, named
    `cases.thumbnail_name(id)` in `out_dir`, each explaining the decision its probability makes at
    `threshold`; returns the files, in the order of `rows`."""
    if rows.empty:
        return []
    by_id = _records_by_id(tfrecord_dir, split, set(rows["id"]))
    images = np.stack([by_id[key] for key in rows["id"]])
    decisions = metrics.predict_positive(rows["probability"].to_numpy(), threshold)
    heatmaps, _ = ensemble_grad_cam(model, images, threshold, decisions)
    written = []
    for row, image, heatmap, decision in zip(
        rows.itertuples(), images, heatmaps, decisions, strict=True
    ):
        title = (
            f"{Path(row.id).name}\n{classes[int(row.label)]}, p = {row.probability:.3f} "
            f"({classes[int(decision)]})"
        )
        out_png = out_dir / thumbnail_name(row.id)
        save_overlays([[Panel(image, heatmap, title)]], out_png, f"threshold {threshold:.3f}")
        written.append(out_png)
    return written
