"""Paired comparisons: the AUC-difference interval, McNemar's test, model vs baseline in the metrics
file and report."""

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from medcls.evaluation import metrics, paired, splits
from medcls.evaluation.document import Evaluation
from medcls.evaluation.report import write_report
from tests.support.scored_sides import scores


def test_identical_predictions_have_a_zero_difference_and_an_interval_around_it():
    labels, probs = scores(150, seed=0, separation=0.3)
    result = paired.paired_auc_difference(labels, probs, probs.copy(), n_resamples=300, seed=1)
    low, high = result["auc_difference_ci95"]
    assert result["auc_difference"] == 0 and low <= 0 <= high
    assert result["method"] == "paired bootstrap, 300 resamples of the same 150 images"


def test_a_clearly_better_model_has_an_interval_above_zero():
    labels, weak = scores(150, seed=0, separation=0.1)
    _, strong = scores(150, seed=0, separation=0.6)  # same seed: same labels, same noise
    result = paired.paired_auc_difference(labels, strong, weak, n_resamples=300, seed=1)
    low, high = result["auc_difference_ci95"]
    assert 0 < low <= result["auc_difference"] <= high
    worse = paired.paired_auc_difference(labels, weak, strong, n_resamples=300, seed=1)
    assert worse["auc_difference_ci95"][1] < 0


def test_the_paired_interval_is_narrower_than_unpaired_noise():
    """Two close models on the same images: the paired interval is tighter than either AUC's."""
    labels, probs = scores(200, seed=3, separation=0.4)
    nudged = np.clip(probs + np.random.default_rng(4).normal(0, 0.02, probs.size), 0, 1)
    pair = paired.paired_auc_difference(labels, nudged, probs, n_resamples=500, seed=0)
    single = metrics.bootstrap_ci(labels, probs, 0.5, n_resamples=500, seed=0)["auc_ci95"]
    low, high = pair["auc_difference_ci95"]
    assert high - low < (single[1] - single[0]) / 3


@pytest.mark.parametrize(
    "new_only, old_only, expected, method",
    [
        # exact: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024
        (9, 1, 22 / 1024, "exact binomial"),
        (3, 3, 1.0, "exact binomial"),
        (0, 0, 1.0, "exact binomial"),
        # chi-square with continuity correction: (|30 - 10| - 1)^2 / 40 = 9.025, p = 0.00266
        (30, 10, math.erfc(math.sqrt(9.025 / 2)), "chi-square, continuity-corrected"),
    ],
)
def test_mcnemar_on_known_counts(new_only, old_only, expected, method):
    concordant = 7  # both right or both wrong: no information, must not change p
    correct_new = [True] * new_only + [False] * old_only + [True] * concordant + [False] * 2
    correct_old = [False] * new_only + [True] * old_only + [True] * concordant + [False] * 2
    result = paired.mcnemar(correct_new, correct_old)
    assert (result["new_only_correct"], result["old_only_correct"]) == (new_only, old_only)
    assert result["p_value"] == pytest.approx(expected)
    assert result["method"] == method
    assert math.isclose(paired.mcnemar(correct_old, correct_new)["p_value"], result["p_value"])


# p-values of the hand-written McNemar test that scipy.stats replaced, for the same counts
HAND_WRITTEN_P_VALUES = {
    (9, 1): 0.021484375,
    (3, 3): 1.0,
    (0, 0): 1.0,
    (12, 5): 0.143463134765625,
    (17, 7): 0.06391465663909912,
    (30, 10): 0.002663119259138554,
    (40, 22): 0.030849999436874973,
    (100, 70): 0.0261350941138681,
}


@pytest.mark.parametrize("counts", HAND_WRITTEN_P_VALUES)
def test_mcnemar_keeps_the_hand_written_tests_p_values(counts):
    new_only, old_only = counts
    result = paired.mcnemar([True] * new_only + [False] * old_only, [False] * new_only + [True] * old_only)
    assert result["p_value"] == pytest.approx(HAND_WRITTEN_P_VALUES[counts], rel=1e-12, abs=0)


def test_mcnemar_chi_square_matches_the_textbook_value():
    result = paired.mcnemar([True] * 30 + [False] * 10, [False] * 30 + [True] * 10)
    assert result["p_value"] == pytest.approx(0.00266, abs=1e-5)


def test_compare_predictions_reports_each_side_at_its_own_threshold():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    old = np.array([0.1, 0.2, 0.6, 0.7, 0.3, 0.8, 0.9, 0.95])
    new = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.8, 0.9, 0.95])
    result = paired.compare_predictions(labels, (new, 0.4), (old, 0.5), n_resamples=50, seed=0)
    assert (result["sensitivity_old"], result["specificity_old"]) == (0.75, 0.5)
    assert (result["sensitivity_new"], result["specificity_new"]) == (1.0, 1.0)
    assert result["auc_difference"] == pytest.approx(1.0 - result["auc_old"])
    assert result["mcnemar"]["new_only_correct"] == 3 and not result["identical"]


@pytest.mark.parametrize(
    "interval, expected",
    [
        ([0.01, 0.05], "better"),
        ([-0.05, -0.01], "worse"),
        ([-0.01, 0.02], "same"),
        ([None, None], "no usable"),
    ],
)
def test_verdict_needs_an_interval_that_excludes_zero(interval, expected):
    assert paired.auc_verdict(interval, "better", "worse", "same").startswith(expected)


def test_difference_text_signs_both_bounds():
    assert paired.difference_text(0.017, [-0.005, 0.041]) == "+0.017 [−0.005, +0.041]"


# --- model vs baseline in the metrics file and the report -----------------------------------


def document_with_baseline(baseline_separation: float) -> tuple[dict, pd.DataFrame]:
    labels, probs = scores(300, seed=5, separation=0.5)
    _, baseline_probs = scores(300, seed=5, separation=baseline_separation)
    predictions = pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(300)],
            "split": np.repeat(["val", "test"], 150),
            "label": labels,
            "probability": probs,
            "baseline_probability": baseline_probs,
        }
    )
    options = dict(rule="youden", n_bootstrap=200, seed=0)
    document = splits.evaluate_predictions(predictions, **options)
    document["baseline"] = splits.evaluate_predictions(
        predictions.assign(probability=predictions["baseline_probability"]), **options
    )
    document["baseline"]["method"] = "test baseline"
    document["versus_baseline"] = paired.versus_baseline(
        predictions, ["test"], n_resamples=200, seed=0
    )
    return document, predictions


def test_the_evaluation_document_holds_a_paired_difference():
    document, _ = document_with_baseline(baseline_separation=0.1)
    Evaluation.model_validate(document)
    pair = document["versus_baseline"]["test"]
    assert pair["auc_difference"] == pytest.approx(
        document["test"]["auc"] - document["baseline"]["test"]["auc"]
    )
    assert pair["auc_difference_ci95"][0] > 0


def test_the_typed_document_refuses_a_paired_difference_without_its_method():
    document, _ = document_with_baseline(baseline_separation=0.1)
    document["versus_baseline"]["test"].pop("method")
    with pytest.raises(ValidationError, match="versus_baseline.test.method"):
        Evaluation.model_validate(document)


@pytest.mark.parametrize(
    "baseline_separation, verdict",
    [(0.1, "the model beats the baseline"), (0.5, "no evidence of a difference")],
)
def test_the_report_states_beating_the_baseline_with_its_confidence(
    tmp_path, baseline_separation, verdict
):
    document, _ = document_with_baseline(baseline_separation)
    out_md = tmp_path / "report.md"
    write_report(document, ["Benign", "Malignant"], "busi", out_md, [])
    line = next(line for line in out_md.read_text().splitlines() if line.startswith("- test: AUC"))
    pair = document["versus_baseline"]["test"]
    assert paired.difference_text(pair["auc_difference"], pair["auc_difference_ci95"]) in line
    assert f"**{verdict}**" in line and "paired bootstrap" in line
