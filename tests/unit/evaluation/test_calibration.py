"""Temperature scaling (`evaluate.calibration: temperature`): the fit, what it may and may not
change, and the Brier score and ECE it is judged by."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from medcls.evaluation import calibration, metrics, splits
from medcls.evaluation.document import Evaluation
from medcls.params import EvaluateParams

COUNT_KEYS = ("tp", "fp", "tn", "fn")


def overconfident(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z) and probabilities sigmoid(z * temperature): calibrated once
    divided by `temperature`."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2, n)
    labels = (rng.random(n) < expit(true_logits)).astype(int)
    return labels, expit(true_logits * temperature)


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_the_fit_recovers_a_known_temperature(temperature):
    labels, probabilities = overconfident(40_000, temperature, seed=0)
    assert calibration.fit_temperature(labels, probabilities) == pytest.approx(temperature, rel=0.05)


def test_scaling_keeps_zero_one_and_order():
    probabilities = np.array([0.0, 1e-30, 0.2, 0.5, 0.8, 1 - 1e-7, 1.0])
    scaled = calibration.apply_temperature(probabilities, 2.0)
    assert scaled[0] == 0 and scaled[-1] == 1 and scaled[3] == 0.5
    assert (np.diff(scaled) > 0).all()
    np.testing.assert_allclose(calibration.apply_temperature(probabilities, 1.0), probabilities)


def predictions(seed: int = 1) -> pd.DataFrame:
    labels, probabilities = overconfident(600, 3.0, seed)
    split = ["val"] * 200 + ["test"] * 200 + [splits.external_split("other")] * 200
    return pd.DataFrame(
        {"split": split, "label": labels, "probability": probabilities, "group": np.arange(600) // 2}
    )


def document_of(rows: pd.DataFrame) -> dict:
    document = splits.evaluate_predictions(rows, rule="youden", n_bootstrap=50, seed=0)
    document["external"] = splits.external_metrics(
        rows, document["threshold"], ["other"], images="all", n_bootstrap=50, seed=0, by_group=True
    )
    return document


def test_scaling_changes_calibration_not_auc_nor_decisions():
    unscaled = predictions()
    scaled, temperatures = calibration.temperature_scaled(unscaled)
    assert list(temperatures) == ["val"] and temperatures["val"] > 1.5  # overconfident: T > 1
    before, after = document_of(unscaled), document_of(scaled)
    assert after["threshold"] == pytest.approx(
        calibration.apply_temperature(before["threshold"], temperatures["val"])
    )
    for where in (("val",), ("test",), ("external", "other")):
        was, now = before, after
        for key in where:
            was, now = was[key], now[key]
        assert now["auc"] == pytest.approx(was["auc"], abs=1e-12)
        assert {key: now[key] for key in COUNT_KEYS} == {key: was[key] for key in COUNT_KEYS}
        assert now["brier"] < was["brier"] and now["ece"] < was["ece"]
    after["calibration"] = calibration.summary(unscaled, scaled, temperatures)
    Evaluation.model_validate(after)
    assert set(after["calibration"]["before"]) == {"val", "test", "external:other"}
    assert after["calibration"]["after"]["external:other"]["ece"] == after["external"]["other"]["ece"]


def test_fold_predictions_get_the_temperature_fitted_out_of_fold():
    model = predictions(seed=2)
    folds = predictions(seed=3).assign(
        split=["out_of_fold"] * 400 + [splits.ensemble_external_split("other")] * 200
    )
    folds["probability"] = expit(calibration.logits(folds["probability"]) * 2)  # more overconfident
    scaled, temperatures = calibration.temperature_scaled(pd.concat([model, folds], ignore_index=True))
    assert set(temperatures) == {"val", "out_of_fold"}
    assert temperatures["out_of_fold"] > 1.5 * temperatures["val"]
    ensemble = scaled["split"] == splits.ensemble_external_split("other")
    np.testing.assert_allclose(
        scaled.loc[ensemble, "probability"],
        calibration.apply_temperature(folds["probability"].iloc[400:], temperatures["out_of_fold"]),
    )


def test_brier_and_ece_of_a_hand_made_example():
    labels = [0, 1, 1, 1]
    probabilities = [0.12, 0.18, 0.6, 0.9]
    # bins of 0.1: [0.1, 0.2) holds 0.12 and 0.18 (mean 0.15, 1 of 2 positive: gap 0.35),
    # [0.6, 0.7) holds 0.6 (gap 0.4), [0.9, 1.0] holds 0.9 (gap 0.1)
    scores = metrics.calibration_scores(labels, probabilities)
    assert scores["ece"] == pytest.approx((2 * 0.35 + 0.4 + 0.1) / 4)
    assert scores["brier"] == pytest.approx((0.12**2 + 0.82**2 + 0.4**2 + 0.1**2) / 4)


def test_calibration_is_off_by_default_and_takes_temperature():
    evaluate = {"threshold": "youden", "bootstrap": 0, "baseline": False}
    assert EvaluateParams(**evaluate).calibration == "none"
    assert EvaluateParams(**evaluate, calibration="temperature").calibration == "temperature"
    with pytest.raises(ValueError):
        EvaluateParams(**evaluate, calibration="platt")


def test_separable_predictions_stop_at_the_lowest_temperature():
    labels, probabilities = np.array([0, 0, 1, 1]), np.array([0.2, 0.4, 0.6, 0.8])
    fitted = calibration.fit_temperature(labels, probabilities)
    assert fitted == pytest.approx(calibration.TEMPERATURE_BOUNDS[0], rel=1e-3)
