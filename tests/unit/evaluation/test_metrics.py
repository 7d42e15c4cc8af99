"""Metrics: hand-computed values, exact threshold rules, reproducible intervals, consistent files."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medcls.evaluation import metrics, splits
from medcls.evaluation.document import Evaluation
from medcls.params import MinSensitivity

# Sorted by probability: labels 0 0 0 1 0 1 1 1. At 0.6: tp 3, fp 0 (J = 0.75); at 0.4: tp 4, fp 1
# (J = 1 - 0.25 = 0.75). Youden's tie goes to 0.6, the higher specificity.
LABELS = [0, 0, 0, 1, 0, 1, 1, 1]
PROBS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def synthetic(n: int, seed: int, separation: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of a fair but imperfect classifier (ties included by rounding)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(rng.normal(0.3 + separation * labels, 0.2), 0, 1).round(2)
    return labels, probs


def test_youden_picks_the_best_cut_and_breaks_ties_towards_specificity():
    assert metrics.choose_threshold(LABELS, PROBS, "youden") == 0.6


def test_youden_ties_are_exact_not_decided_by_float_rounding():
    # J = 3/10 at the 3rd score, and again at (tp 4, fp 1), ... (tp 8, fp 5); in floats
    # 0.4 - 0.1 > 0.3, which would wrongly favour a lower threshold.
    labels = [1, 1, 1] + [0, 1] * 5 + [0, 0, 0, 0, 0, 1, 1]
    probs = np.linspace(0.95, 0.05, len(labels))
    assert metrics.choose_threshold(labels, probs, "youden") == probs[2]


@pytest.mark.parametrize("target, expected", [(0.75, 0.6), (0.9, 0.4), (1.0, 0.4), (0.25, 0.8)])
def test_min_sensitivity_picks_the_highest_threshold_meeting_it(target, expected):
    threshold = metrics.choose_threshold(LABELS, PROBS, MinSensitivity(min_sensitivity=target))
    assert threshold == expected
    assert metrics.binary_metrics(LABELS, PROBS, threshold)["sensitivity"] >= target


def test_fixed_threshold_passes_through():
    assert metrics.choose_threshold(LABELS, PROBS, 0.37) == 0.37
    assert metrics.rule_name(0.37) == "fixed"
    assert metrics.rule_name(MinSensitivity(min_sensitivity=0.95)) == "min_sensitivity=0.95"


def test_youden_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_threshold([0, 0, 0], [0.1, 0.2, 0.3], "youden")


def test_binary_metrics_on_a_hand_computed_example():
    labels = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    probs = [0.1, 0.4, 0.65, 0.2, 0.55, 0.35, 0.8, 0.9, 0.7]
    result = metrics.binary_metrics(labels, probs, 0.5)
    # Positive at >= 0.5: 0.65 and 0.55 are false positives, 0.8 0.9 0.7 true positives,
    # 0.35 a false negative, 0.1 0.4 0.2 true negatives.
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (3, 2, 3, 1)
    assert (result["n"], result["positives"], result["negatives"]) == (9, 4, 5)
    assert result["accuracy"] == pytest.approx(6 / 9)
    assert result["sensitivity"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(3 / 5)
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 5) / 2)
    assert result["precision"] == pytest.approx(3 / 5)
    assert result["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    # 17 of the 20 positive-negative pairs are ordered correctly (0.35 beats only 0.1 and 0.2).
    assert result["auc"] == pytest.approx(17 / 20)
    # Ranked: 1 1 1 0 0 0 1 0 0 -> precision 1, 1, 1 and 4/7 at the positives.
    assert result["pr_auc"] == pytest.approx((3 + 4 / 7) / 4)
    squared_errors = [0.01, 0.16, 0.4225, 0.04, 0.3025, 0.4225, 0.04, 0.01, 0.09]
    assert result["brier"] == pytest.approx(sum(squared_errors) / 9)
    # Every example has a bin of its own, so the ECE is the mean absolute error.
    assert result["ece"] == pytest.approx((1.9 + 1.25) / 9)
    assert all(type(result[key]) is int for key in ("tp", "fp", "tn", "fn", "n"))
    assert all(type(result[key]) is float for key in ("auc", "accuracy", "brier", "ece"))


def test_single_class_split_has_null_auc_and_valid_json():
    result = metrics.binary_metrics([0, 0, 0], [0.1, 0.6, 0.3], 0.5)
    intervals = metrics.bootstrap_ci([0, 0, 0], [0.1, 0.6, 0.3], 0.5, n_resamples=50, seed=0)
    assert result["auc"] is None and result["pr_auc"] is None and result["sensitivity"] is None
    assert result["precision"] == 0.0 and result["f1"] == 0.0 and result["specificity"] == 2 / 3
    assert intervals["auc_ci95"] == [None, None]
    json.dumps({**result, **intervals}, allow_nan=False)


def test_perfect_ranking_has_pr_auc_1_not_a_rounding_error_above():
    labels = np.repeat([0, 1], 43)  # 43 positives: sklearn's sum of recall steps is 1 + 2e-16
    document = metrics.binary_metrics(labels, np.linspace(0, 1, 86), threshold=0.5)
    assert document["pr_auc"] == 1.0


def test_precision_without_predicted_positives_is_null():
    result = metrics.binary_metrics([0, 1], [0.2, 0.4], 0.9)
    assert result["precision"] is None
    assert result["f1"] == 0.0  # no true positives among the 1 positive: 2*0 / (0 + 0 + 1)


@pytest.mark.parametrize(
    "labels, probs, message",
    [
        ([0, 2], [0.1, 0.2], "labels must be 0 or 1"),
        ([0, 1], [0.1, float("nan")], "finite and within"),
        ([0, 1], [0.1, 1.2], "finite and within"),
        ([0, 1], [0.1], "equally long"),
    ],
)
def test_bad_input_is_refused(labels, probs, message):
    with pytest.raises(ValueError, match=message):
        metrics.binary_metrics(labels, probs, 0.5)


def test_expected_calibration_error_by_hand():
    # bins of width 0.5: [0.1, 0.2, 0.3] mean 0.2 vs 1/3 positive; [0.9] vs 1.
    ece = metrics.expected_calibration_error([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], bins=2)
    assert ece == pytest.approx(3 / 4 * (1 / 3 - 0.2) + 1 / 4 * 0.1)


def test_bootstrap_is_deterministic_and_brackets_the_point_estimate():
    labels, probs = synthetic(300, seed=1)
    first = metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=7)
    assert first == metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=7)
    assert first != metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=8)
    point = metrics.binary_metrics(labels, probs, 0.5)
    for metric in ("auc", "accuracy"):
        low, high = first[f"{metric}_ci95"]
        assert low < point[metric] < high


def test_bootstrap_auc_matches_sklearn_on_the_same_resamples():
    labels, probs = synthetic(60, seed=2)
    n_resamples, seed = 200, 3
    rows = np.random.default_rng(seed).integers(0, labels.size, size=(n_resamples, labels.size))
    reference = [roc_auc_score(labels[r], probs[r]) for r in rows if np.unique(labels[r]).size == 2]
    intervals = metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=n_resamples, seed=seed)
    assert intervals["auc_ci95"] == pytest.approx(list(np.percentile(reference, [2.5, 97.5])))


def test_bootstrap_in_chunks_gives_the_intervals_of_one_matrix(monkeypatch):
    labels, probs = synthetic(300, seed=6)
    whole = metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=1)
    monkeypatch.setattr(metrics, "RESAMPLE_CELLS", 300 * 7)  # chunks of 7 resamples, 500 = 71*7 + 3
    assert len(list(metrics.resample_counts(np.random.default_rng(0), 300, 500))) == 72
    assert metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=1) == whole


def test_bootstrap_interval_narrows_with_more_data():
    def width(n: int) -> float:
        intervals = metrics.bootstrap_ci(*synthetic(n, seed=4), 0.5, n_resamples=300, seed=0)
        low, high = intervals["auc_ci95"]
        return high - low

    assert width(2000) < width(100) / 2


def test_bootstrap_of_1000_rows_1000_times_is_fast():
    labels, probs = synthetic(1000, seed=5)
    start = time.perf_counter()
    metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=1000, seed=0)
    assert time.perf_counter() - start < 3


def predictions_frame(n: int = 200) -> pd.DataFrame:
    frames = []
    for split, seed in (("val", 10), ("test", 11)):
        labels, probs = synthetic(n, seed)
        frames.append(
            pd.DataFrame(
                {
                    "id": [f"{split}{i}" for i in range(n)],
                    "split": split,
                    "label": labels,
                    "probability": probs,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def document() -> dict:
    return splits.evaluate_predictions(predictions_frame(), rule="youden", n_bootstrap=200, seed=0)


def test_evaluate_predictions_end_to_end(document):
    frame = predictions_frame()
    val = frame[frame["split"] == "val"]
    assert document["threshold"] == metrics.choose_threshold(val["label"], val["probability"], "youden")
    assert document["threshold_rule"] == "youden"
    test = frame[frame["split"] == "test"]
    assert (
        document["test"]["tp"]
        == metrics.binary_metrics(test["label"], test["probability"], document["threshold"])["tp"]
    )
    Evaluation.model_validate(document)
    json.dumps(document, allow_nan=False)


@pytest.mark.parametrize(
    "frame_change, message",
    [
        (lambda f: f[f["split"] == "val"], "no 'test' rows"),
        (
            lambda f: f.assign(label=np.where(f["split"] == "val", 1, f["label"])),
            "val split holds one class",
        ),
        (lambda f: f.drop(columns="probability"), r"lack the columns \['probability'\]"),
    ],
)
def test_evaluate_predictions_explains_unusable_input(frame_change, message):
    with pytest.raises(ValueError, match=message):
        splits.evaluate_predictions(
            frame_change(predictions_frame()), rule="youden", n_bootstrap=10, seed=0
        )
