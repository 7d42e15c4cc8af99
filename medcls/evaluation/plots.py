"""Evaluation plot data that `dvc plots show/diff` draws: one file per chart, with a `split`
column, so that one chart holds every split (val, test, each external set, out-of-fold and the
fold ensemble), coloured by split by the `plot_templates/by_split.json` template.

Every number comes from `medcls.evaluation.metrics` or the sklearn curves it uses, so the plots
show what the evaluation document reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import RocCurveDisplay, precision_recall_curve, roc_curve

from medcls.evaluation import metrics

# Enough for a smooth curve, few enough that a committed plot file diffs in a screenful.
MAX_CURVE_POINTS = 200
# The "nothing predicted positive" end of a curve has no finite threshold; JSON needs a number.
NO_POSITIVE_THRESHOLD = 1.0


def _two_class_arrays(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_prob = metrics.checked_arrays(y_true, y_prob)
    if np.unique(y_true).size < 2:
        raise ValueError(
            f"ROC and precision-recall curves need both classes; this split has only label "
            f"{y_true[0]} (check the split stage's class counts)"
        )
    return y_true, y_prob


def roc_points(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, np.ndarray]:
    """ROC curve from (0, 0) to (1, 1), with finite thresholds."""
    fpr, tpr, thresholds = roc_curve(*_two_class_arrays(y_true, y_prob))
    return {"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, NO_POSITIVE_THRESHOLD)}


def precision_recall_points(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, np.ndarray]:
    """Precision-recall curve from recall 1 down to sklearn's closing point (recall 0, precision 1)."""
    precision, recall, thresholds = precision_recall_curve(*_two_class_arrays(y_true, y_prob))
    return {
        "recall": recall,
        "precision": precision,
        "threshold": np.append(thresholds, NO_POSITIVE_THRESHOLD),  # the closing point has none
    }


def _curve_records(columns: Mapping[str, np.ndarray], limit: int = MAX_CURVE_POINTS) -> list[dict]:
    """At most `limit` evenly spaced points as JSON rows, keeping both ends of the curve."""
    length = len(next(iter(columns.values())))
    keep = np.unique(np.linspace(0, length - 1, min(limit, length)).round().astype(int))
    return [{name: float(values[i]) for name, values in columns.items()} for i in keep]


def write_curve_data(
    by_split: Mapping[str, tuple[ArrayLike, ArrayLike]],
    threshold: float,
    out_dir: Path,
    class_names: Sequence[str],
) -> None:
    """roc.json, precision_recall.json and calibration.json with a row per point and split, and
    confusion.csv of the test split at `threshold`.

    A split of one class has no ROC or precision-recall curve (its AUC is null) and is left out
    of those two charts. Formats follow DVC's `confusion` template and `plot_templates/by_split.json`;
    confusion.csv has one row per example with class names, so the rendered matrix is labelled.
    Written here, not by dvclive's `log_sklearn_plot`, whose roc.json holds an `Infinity`
    threshold (not JSON) and every point, and whose precision-recall data drops the curve's
    closing point.
    """
    if len(class_names) != 2:
        raise ValueError(f"need [negative, positive] class names; got {list(class_names)}")
    arrays = {split: metrics.checked_arrays(*rows) for split, rows in by_split.items()}
    curved = {split: rows for split, rows in arrays.items() if np.unique(rows[0]).size == 2}
    charts = {
        "roc": {split: _curve_records(roc_points(*rows)) for split, rows in curved.items()},
        "precision_recall": {
            split: _curve_records(precision_recall_points(*rows)) for split, rows in curved.items()
        },
        "calibration": {split: metrics.calibration_bins(*rows) for split, rows in arrays.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for chart, splits in charts.items():
        rows = [{"split": split, **row} for split, records in splits.items() for row in records]
        (out_dir / f"{chart}.json").write_text(json.dumps({chart: rows}, indent=2, allow_nan=False) + "\n")
    y_true, y_prob = _two_class_arrays(*arrays["test"])
    names = np.asarray(class_names)
    predicted = metrics.predict_positive(y_prob, threshold).astype(int)
    pd.DataFrame({"actual": names[y_true], "predicted": names[predicted]}).to_csv(
        out_dir / "confusion.csv", index=False
    )


def _draw_roc(axis, curves: Mapping[str, tuple[ArrayLike, ArrayLike]], title: str) -> None:
    for position, (name, (y_true, y_prob)) in enumerate(curves.items()):
        RocCurveDisplay.from_predictions(
            *_two_class_arrays(y_true, y_prob),
            name=name,
            ax=axis,
            plot_chance_level=position == len(curves) - 1,
            chance_level_kw={"label": "chance", "color": "grey"},
        )
    axis.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity)",
        title=title,
    )


def roc_panels_figure(panels: Mapping[str, Mapping[str, tuple[ArrayLike, ArrayLike]]]) -> Figure:
    """One ROC panel per title, side by side, each overlaying its curves (e.g. two revisions)."""
    figure = Figure(figsize=(5 * len(panels), 5))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for axis, (title, curves) in zip(axes, panels.items()):
        _draw_roc(axis, curves, title)
    return figure
