"""Paired comparisons of two sets of predictions on the same images.

A difference between two AUCs measured on the same images is far less noisy than either AUC's own
interval suggests, because both models meet the same easy and hard cases; only a paired test shows
it. Every function here takes two probability columns over one set of labelled images, whatever
they are: model vs baseline on the test split or on external sets, one revision vs another,
out-of-fold predictions.

- AUC difference: paired percentile bootstrap. Images are resampled with replacement and both
  sides are scored on the very same resample (DeLong's test is not implemented).
- Decisions: McNemar's test on the images exactly one side classifies correctly, each side at
  its own threshold; exact binomial below `EXACT_BELOW` discordant images, else chi-square
  with continuity correction (both from scipy.stats).

Imports stay light (no TensorFlow), so `medcls compare` and `medcls review` run without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import binomtest, chi2

from medcls.evaluation.metrics import (
    binary_metrics,
    checked_arrays,
    percentile_interval,
    predict_positive,
    resample_weights,
    roc_auc,
    weighted_aucs,
)

EXACT_BELOW = 25  # discordant images; the usual rule for McNemar's chi-square approximation
SIGNIFICANCE = 0.05


def paired_auc_difference(
    y_true: ArrayLike,
    prob_new: ArrayLike,
    prob_old: ArrayLike,
    *,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict:
    """AUC(new) - AUC(old) on the same images, with its paired percentile-bootstrap interval.

    Both sides are scored on the same resampled rows (`np.random.default_rng(seed)`; with
    `groups`, whole groups are resampled), so the interval reflects how the two models differ, not
    how hard the images are. Resamples with one class have no AUC on either side and are left out
    of both.
    """
    y_true, prob_new = checked_arrays(y_true, prob_new)
    _, prob_old = checked_arrays(y_true, prob_old)
    auc_new, auc_old = roc_auc(y_true, prob_new), roc_auc(y_true, prob_old)
    weights = resample_weights(np.random.default_rng(seed), y_true.size, n_resamples, groups)
    resampled = np.concatenate(
        [weighted_aucs(w, y_true, prob_new) - weighted_aucs(w, y_true, prob_old) for w in weights]
    )
    units = "images" if groups is None else f"groups ({y_true.size} images)"
    count = y_true.size if groups is None else pd.unique(np.asarray(groups)).size
    return {
        "auc_difference": None if None in (auc_new, auc_old) else auc_new - auc_old,
        "auc_difference_ci95": percentile_interval(resampled, level),
        "method": f"paired bootstrap, {n_resamples} resamples of the same {count} {units}",
    }


def mcnemar(correct_new: ArrayLike, correct_old: ArrayLike) -> dict:
    """McNemar's test of two classifiers' correctness on the same images (two-sided p-value).

    `new_only` and `old_only` count the images only that side gets right; the others carry no
    information about a difference. With fewer than `EXACT_BELOW` of them the exact binomial test
    is used, else the chi-square approximation with continuity correction.
    """
    correct_new, correct_old = np.asarray(correct_new, bool), np.asarray(correct_old, bool)
    new_only = int(np.sum(correct_new & ~correct_old))
    old_only = int(np.sum(~correct_new & correct_old))
    discordant = new_only + old_only
    if discordant == 0:
        p_value, method = 1.0, "exact binomial"  # no image tells the sides apart
    elif discordant < EXACT_BELOW:
        p_value, method = binomtest(new_only, discordant).pvalue, "exact binomial"
    else:
        statistic = max(abs(new_only - old_only) - 1, 0) ** 2 / discordant
        p_value, method = chi2.sf(statistic, df=1), "chi-square, continuity-corrected"
    return {
        "new_only_correct": new_only,
        "old_only_correct": old_only,
        "p_value": float(p_value),
        "method": method,
    }


def compare_predictions(
    y_true: ArrayLike,
    new: tuple[ArrayLike, float],
    old: tuple[ArrayLike, float],
    *,
    n_resamples: int,
    seed: int,
) -> dict:
    """Everything a reviewer needs about two sides, each given as (probabilities, its threshold).

    Sensitivity and specificity are each side's own, at its own threshold, since that is how each
    would be used; McNemar compares the decisions those thresholds make.
    """
    y_true, _ = checked_arrays(y_true, new[0])
    sides = {
        side: (checked_arrays(y_true, probs)[1], threshold)
        for side, (probs, threshold) in (("new", new), ("old", old))
    }
    at_threshold = {side: binary_metrics(y_true, *sides[side]) for side in sides}
    correct = {side: predict_positive(*sides[side]) == (y_true == 1) for side in sides}
    (prob_new, threshold_new), (prob_old, threshold_old) = sides["new"], sides["old"]
    return {
        "n": int(y_true.size),
        "identical": bool(np.array_equal(prob_new, prob_old) and threshold_new == threshold_old),
        **{
            f"{metric}_{side}": at_threshold[side][metric]
            for metric in ("auc", "sensitivity", "specificity")
            for side in sides
        },
        **paired_auc_difference(y_true, prob_new, prob_old, n_resamples=n_resamples, seed=seed),
        "mcnemar": mcnemar(correct["new"], correct["old"]),
    }


def with_baseline(rows: pd.DataFrame, baseline_rows: pd.DataFrame) -> pd.DataFrame:
    """The model's rows with the baseline's probability of the same split and image beside its
    own (`baseline_probability`): what `versus_baseline` pairs."""
    return rows.merge(
        baseline_rows[["split", "id", "probability"]].rename(
            columns={"probability": "baseline_probability"}
        ),
        on=["split", "id"],
        validate="one_to_one",
    )


def versus_baseline(
    predictions: pd.DataFrame,
    splits: Sequence[str],
    *,
    n_resamples: int,
    seed: int,
    by_group: bool = False,
) -> dict:
    """Model minus baseline AUC on each split's images (`probability`, `baseline_probability`);
    `by_group` resamples whole groups (the `group` column)."""
    return {
        split: paired_auc_difference(
            rows["label"],
            rows["probability"],
            rows["baseline_probability"],
            n_resamples=n_resamples,
            seed=seed,
            groups=rows["group"] if by_group else None,
        )
        for split, rows in ((split, predictions[predictions["split"] == split]) for split in splits)
    }


def auc_verdict(interval: list[float | None], better: str, worse: str, same: str) -> str:
    """Plain words for a paired AUC interval: `better`/`worse` only when it excludes 0."""
    low, high = interval
    if low is None:
        return "no usable resample: AUC undefined"
    if low > 0:
        return better
    if high < 0:
        return worse
    return same


def signed(value: float | None) -> str:
    """A difference with its sign and a true minus sign, as a reviewer reads it."""
    return "n/a" if value is None else f"{value:+.3f}".replace("-", "−")


def difference_text(difference: float | None, interval: list[float | None]) -> str:
    """ "+0.017 [−0.005, +0.041]", the form every report and table uses."""
    low, high = interval
    bounds = "[n/a]" if low is None else f"[{signed(low)}, {signed(high)}]"
    return f"{signed(difference)} {bounds}"
