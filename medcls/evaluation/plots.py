"""Evaluation plots: data files that `dvc plots show/diff` renders, and PNG figures to open directly.

Figures are drawn on bare `matplotlib.figure.Figure` objects, which save through the Agg canvas
without pyplot: no display is needed, and no global figure state is left behind. Every number
drawn comes from `medcls.evaluation.metrics` or the sklearn curves it uses, so the plots show what
the metrics file reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    precision_recall_curve,
    roc_curve,
)

from medcls.evaluation import metrics
from medcls.pipeline.outputs import save_figure, write_json

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
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float,
    out_dir: Path,
    class_names: Sequence[str],
) -> None:
    """roc.json, precision_recall.json, calibration.json and confusion.csv for one split.

    Formats follow DVC's `simple` and `confusion` templates; confusion.csv has one row per
    example with class names, so the rendered matrix is labelled. Written here, not by dvclive's
    `log_sklearn_plot`, whose roc.json holds an `Infinity` threshold (not JSON) and every point, and
    whose precision-recall data drops the curve's closing point.
    """
    if len(class_names) != 2:
        raise ValueError(f"need [negative, positive] class names; got {list(class_names)}")
    y_true, y_prob = _two_class_arrays(y_true, y_prob)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "roc.json", {"roc": _curve_records(roc_points(y_true, y_prob))})
    write_json(
        out_dir / "precision_recall.json",
        {"precision_recall": _curve_records(precision_recall_points(y_true, y_prob))},
    )
    write_json(out_dir / "calibration.json", {"calibration": metrics.calibration_bins(y_true, y_prob)})
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


def save_roc_png(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], out_png: Path, title: str) -> None:
    """ROC curves of several splits on one axis, each labelled with its AUC (two decimals)."""
    figure = Figure(figsize=(5, 5))
    _draw_roc(figure.subplots(), curves, title)
    save_figure(figure, out_png)


def save_roc_panels_png(
    panels: Mapping[str, Mapping[str, tuple[ArrayLike, ArrayLike]]], out_png: Path
) -> None:
    """One ROC panel per title, side by side, each overlaying its curves (e.g. two revisions)."""
    figure = Figure(figsize=(5 * len(panels), 5))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for axis, (title, curves) in zip(axes, panels.items()):
        _draw_roc(axis, curves, title)
    save_figure(figure, out_png)


def save_confusion_png(
    tp: int, fp: int, tn: int, fn: int, class_names: Sequence[str], out_png: Path, title: str
) -> None:
    """2x2 matrix, rows actual and columns predicted (negative first), shaded by row share, with
    counts and row shares."""
    counts = np.array([[tn, fp], [fn, tp]])
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    figure = Figure(figsize=(4.5, 4))
    axis = figure.subplots()
    display = ConfusionMatrixDisplay(shares, display_labels=class_names).plot(
        ax=axis, cmap="Blues", colorbar=False, values_format=".1%", im_kw={"vmin": 0, "vmax": 1}
    )
    for (row, column), text in np.ndenumerate(display.text_):
        share = f"\n{text.get_text()}" if totals[row, 0] else ""
        text.set_text(f"{counts[row, column]}{share}")
    axis.set(xlabel="Predicted", ylabel="Actual", title=title)
    save_figure(figure, out_png)


def save_calibration_png(y_true: ArrayLike, y_prob: ArrayLike, out_png: Path, title: str) -> None:
    """Reliability diagram: observed positive rate per probability bin against the diagonal."""
    table = pd.DataFrame(metrics.calibration_bins(y_true, y_prob))
    ece = metrics.expected_calibration_error(y_true, y_prob)
    figure = Figure(figsize=(5, 5))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axis.plot(table["mean_predicted"], table["fraction_positive"], "o-", label=f"model (ECE {ece:.3f})")
    for row in table.itertuples():
        axis.annotate(
            f"n={row.count}",
            (row.mean_predicted, row.fraction_positive),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, -10),
        )
    axis.set(
        xlabel="Mean predicted probability",
        ylabel="Fraction positive",
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
        title=title,
    )
    axis.legend(loc="upper left")
    save_figure(figure, out_png)
