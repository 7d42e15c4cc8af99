"""Classification metrics from predicted probabilities.

Every reported number is derived here from one set of predictions, so the evaluation document
cannot disagree with itself: the rates are computed from the confusion counts by
`rates_from_counts`. An undefined value (an AUC on a
one-class split, a precision with no predicted positives) is `None`, which JSON writes as `null`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    roc_auc_score,
)

from medcls.params import MinSensitivity, ThresholdRule
from medcls.pipeline.errors import MissingClassError

ECE_BINS = 10  # equal-width probability bins of the expected calibration error


def checked_arrays(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """0/1 int labels and float probabilities; refuses input that would yield NaN metrics."""
    labels, probs = np.asarray(y_true), np.asarray(y_prob, dtype=float)
    if labels.ndim != 1 or labels.shape != probs.shape or labels.size == 0:
        raise ValueError(
            f"need two equally long, non-empty 1-D arrays; got labels {labels.shape}, "
            f"probabilities {probs.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; found {sorted(set(labels.tolist()) - {0, 1})}")
    if not (np.isfinite(probs) & (probs >= 0) & (probs <= 1)).all():
        raise ValueError("probabilities must be finite and within [0, 1]; check the model output")
    return labels.astype(int), probs


def predict_positive(y_prob: np.ndarray, threshold: float) -> np.ndarray:
    """The one decision rule used everywhere: positive when the probability reaches it."""
    return y_prob >= threshold


# --- threshold choice ------------------------------------------------------------------------


def rule_name(rule: ThresholdRule) -> str:
    """Short label for the metrics file: "youden", "fixed" or "min_sensitivity=0.95"."""
    if isinstance(rule, MinSensitivity):
        return f"min_sensitivity={rule.min_sensitivity:g}"
    return "youden" if rule == "youden" else "fixed"


def _roc_counts(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct thresholds (highest first) with their true- and false-positive counts.

    Integer counts let threshold rules compare candidates exactly; rates such as 0.8 - 0.5
    and 0.3 - 0.0 differ in floating point and would break ties arbitrarily.
    """
    order = np.argsort(-y_prob, kind="stable")
    scores, labels = y_prob[order], y_true[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_each_score]
    return scores[last_of_each_score], tps, last_of_each_score + 1 - tps


def choose_threshold(y_true: ArrayLike, y_prob: ArrayLike, rule: ThresholdRule) -> float:
    """Decision threshold for `rule`; the caller picks it on validation and applies it to test.

    "youden" maximises sensitivity + specificity - 1, ties going to the higher threshold (better
    specificity); MinSensitivity(p) is the highest threshold whose sensitivity is >= p; a number is
    the threshold itself. Candidates are the observed probabilities, so the result lies in [0, 1].
    """
    if not isinstance(rule, MinSensitivity) and rule != "youden":
        return float(rule)
    y_true, y_prob = checked_arrays(y_true, y_prob)
    thresholds, tps, fps = _roc_counts(y_true, y_prob)
    positives, negatives = tps[-1], fps[-1]
    if positives == 0 or (rule == "youden" and negatives == 0):
        raise MissingClassError(
            f"threshold rule {rule_name(rule)} needs both classes in the data it is chosen on"
        )
    if rule == "youden":
        scores = tps * negatives - fps * positives  # Youden's J scaled by P * N
    else:
        scores = tps >= rule.min_sensitivity * positives
    return float(thresholds[np.argmax(scores)])  # argmax: the first, i.e. highest, best threshold


# --- point metrics ---------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def rates_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict:
    """Every count-based metric, from the confusion counts alone.

    precision is None without predicted positives; f1 = 2tp / (2tp + fp + fn), the harmonic mean
    of precision and sensitivity, also defined (as 0) when precision is not; balanced accuracy is
    None when sensitivity or specificity is.
    """
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    balanced = None if None in (sensitivity, specificity) else (sensitivity + specificity) / 2
    return {
        "n": tp + fp + tn + fn,
        "positives": tp + fn,
        "negatives": tn + fp,
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "balanced_accuracy": balanced,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def calibration_bins(y_true: ArrayLike, y_prob: ArrayLike, bins: int = ECE_BINS) -> list[dict]:
    """Reliability table over equal-width probability bins ([k/b, (k+1)/b), the last one closed).

    Empty bins are left out. The ECE, the calibration plot data and the reliability figure all
    read this table.
    """
    y_true, y_prob = checked_arrays(y_true, y_prob)
    index = np.minimum((y_prob * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    prob_sums = np.bincount(index, weights=y_prob, minlength=bins)
    positive_sums = np.bincount(index, weights=y_true, minlength=bins)
    return [
        {
            "mean_predicted": float(prob_sums[b] / counts[b]),
            "fraction_positive": float(positive_sums[b] / counts[b]),
            "count": int(counts[b]),
        }
        for b in np.flatnonzero(counts)
    ]


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, bins: int = ECE_BINS) -> float:
    """Bin-size weighted mean gap between predicted probability and observed positive rate."""
    table = calibration_bins(y_true, y_prob, bins)
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] * abs(row["mean_predicted"] - row["fraction_positive"]) for row in table)
        / total
    )


def calibration_scores(y_true: ArrayLike, y_prob: ArrayLike) -> dict:
    """Brier score (mean squared error of the probability) and ECE, over all rows."""
    y_true, y_prob = checked_arrays(y_true, y_prob)
    return {
        "brier": float(brier_score_loss(y_true, y_prob)),
        "ece": expected_calibration_error(y_true, y_prob),
    }


def roc_auc(y_true: ArrayLike, y_prob: ArrayLike) -> float | None:
    """ROC AUC, or None when only one class is present (it is undefined, not 0.5)."""
    y_true, y_prob = checked_arrays(y_true, y_prob)
    return float(roc_auc_score(y_true, y_prob)) if np.unique(y_true).size == 2 else None


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike, threshold: float) -> dict:
    """Confusion counts at `threshold`, the rates derived from them, and threshold-free scores.

    pr_auc is the average precision (None without positives), at most 1: summed over recall steps,
    it can exceed 1 by a rounding error when every positive ranks first; brier and ece use all rows.
    """
    y_true, y_prob = checked_arrays(y_true, y_prob)
    predicted = predict_positive(y_prob, threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel().tolist()
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return {
        **counts,
        **rates_from_counts(**counts),
        "auc": roc_auc(y_true, y_prob),
        "pr_auc": min(1.0, float(average_precision_score(y_true, y_prob))) if tp + fn else None,
        **calibration_scores(y_true, y_prob),
    }


# --- bootstrap -------------------------------------------------------------------------------


# Resamples x rows held at once: the AUC of a chunk takes about ten such matrices (~16 MB each),
# so the bootstrap's memory stays flat however many images a split has (1000 resamples of
# 15,000 test images took 1.2 GB at once).
RESAMPLE_CELLS = 2_000_000


def resample_counts(
    rng: np.random.Generator, n_rows: int, n_resamples: int, row_width: int | None = None
) -> Iterator[np.ndarray]:
    """(resamples, rows) matrices, a chunk of resamples at a time: how often each row is drawn, with
    replacement, in each resample. The chunks hold the very draws of one whole matrix. Chunks are
    sized for resamples `row_width` wide (default `n_rows`), the width the caller expands them to.
    An empty chunk stands for no resamples, so that intervals come out undefined (None).
    """
    chunk = max(1, RESAMPLE_CELLS // (row_width or n_rows))
    for start in range(0, max(n_resamples, 1), chunk):
        count = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_rows, size=(count, n_rows))
        flat = draws + n_rows * np.arange(count)[:, None]
        yield np.bincount(flat.ravel(), minlength=count * n_rows).reshape(count, n_rows)


def resample_weights(
    rng: np.random.Generator, n_rows: int, n_resamples: int, groups: ArrayLike | None = None
) -> Iterator[np.ndarray]:
    """(resamples, rows) bootstrap weights, a chunk of resamples at a time: rows drawn with
    replacement, or with `groups` (one id per row) whole groups drawn with replacement (cluster
    bootstrap), each row weighing as often as its group was drawn. Images of one patient are not
    independent; resampling them one by one would make an interval too narrow."""
    if groups is None:
        yield from resample_counts(rng, n_rows, n_resamples)
        return
    codes, unique = pd.factorize(np.asarray(groups))
    if codes.size != n_rows:
        raise ValueError(f"need one group per row; got {codes.size} groups for {n_rows} rows")
    for counts in resample_counts(rng, unique.size, n_resamples, row_width=n_rows):
        yield counts[:, codes]


def weighted_aucs(weights: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """ROC AUC of every resample at once (Mann-Whitney with ties counted half).

    Resamples holding one class have no AUC and are left out.
    """
    order = np.argsort(y_prob, kind="stable")
    scores, positive = y_prob[order], y_true[order] == 1
    weights = weights[:, order]
    positive_weights, negative_weights = weights * positive, weights * ~positive
    negatives_up_to = np.pad(np.cumsum(negative_weights, axis=1), ((0, 0), (1, 0)))
    below = negatives_up_to[:, np.searchsorted(scores, scores, side="left")]
    tied = negatives_up_to[:, np.searchsorted(scores, scores, side="right")] - below
    wins = np.sum(positive_weights * (below + tied / 2), axis=1)
    pairs = positive_weights.sum(axis=1) * negative_weights.sum(axis=1)
    return wins[pairs > 0] / pairs[pairs > 0]


def percentile_interval(values: np.ndarray, level: float) -> list[float | None]:
    if values.size == 0:
        return [None, None]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_ci(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float,
    *,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict:
    """Percentile-bootstrap intervals for AUC, accuracy, sensitivity and specificity, reproducible
    for a seed.

    Rows (or, with `groups`, whole groups: see `resample_weights`) are resampled with replacement
    by `np.random.default_rng(seed)`; the keys keep the "ci95" name for any `level`. An interval
    with no usable resample is [None, None].
    """
    y_true, y_prob = checked_arrays(y_true, y_prob)
    predicted, positive = predict_positive(y_prob, threshold), y_true == 1
    correct = predicted == positive
    resampled: dict[str, list[np.ndarray]] = {
        "auc": [],
        "accuracy": [],
        "sensitivity": [],
        "specificity": [],
    }
    for weights in resample_weights(np.random.default_rng(seed), y_true.size, n_resamples, groups):
        resampled["auc"].append(weighted_aucs(weights, y_true, y_prob))
        resampled["accuracy"].append(weights @ correct / weights.sum(axis=1))
        for metric, rows, hits in (
            ("sensitivity", positive, predicted & positive),
            ("specificity", ~positive, ~predicted & ~positive),
        ):
            totals = weights @ rows  # a resample without such rows has no rate: left out
            resampled[metric].append((weights @ hits)[totals > 0] / totals[totals > 0])
    return {
        f"{metric}_ci95": percentile_interval(np.concatenate(values), level)
        for metric, values in resampled.items()
    }
