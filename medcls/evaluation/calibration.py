"""Temperature scaling: every probability p of a scorer becomes sigmoid(logit(p) / T), with one
temperature T > 0 fitted by minimising the negative log-likelihood on held-out predictions.

The map is strictly increasing, so ranks, the AUC and the decisions at a threshold chosen on the
scaled probabilities are those of the unscaled ones; only calibration (ECE, Brier score) moves.
Each scorer is fitted on the predictions it did not train on: the model on val (where its
threshold is chosen too), the fold models on their out-of-fold predictions, the only images none
of them saw in training; their ensemble's mean is somewhat less confident than one fold model, so
that temperature may soften the ensemble slightly more than its own optimum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from medcls.evaluation import metrics, splits

# Searched range. A fit at the lower bound means separable held-out predictions (the likelihood
# only grows as T -> 0); below it, float64 would round the probabilities of logits beyond about 7
# to exactly 1, merging their ranks, so AUC and decisions would no longer be kept
TEMPERATURE_BOUNDS = (0.2, 20.0)
# The fit clips probabilities to float32's resolution near 1, so one saturated wrong prediction
# (p = 1.0, logit infinite) gives a finite likelihood; scaling itself keeps 0 and 1 as they are
FIT_EPSILON = 1e-7


def logits(probabilities: ArrayLike) -> np.ndarray:
    """logit(p), infinite for p = 0 or 1."""
    return logit(np.asarray(probabilities, dtype=float))


def apply_temperature(probabilities: ArrayLike, temperature: float) -> np.ndarray:
    return expit(logits(probabilities) / temperature)


def fit_temperature(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """The temperature minimising the mean negative log-likelihood of `y_true` under the scaled
    probabilities, within `TEMPERATURE_BOUNDS` (the likelihood is unimodal in log T)."""
    labels, probabilities = metrics.checked_arrays(y_true, y_prob)
    signed = logits(np.clip(probabilities, FIT_EPSILON, 1 - FIT_EPSILON)) * np.where(labels, 1, -1)

    def negative_log_likelihood(log_temperature: float) -> float:
        return float(np.mean(np.logaddexp(0, -signed / np.exp(log_temperature))))

    fitted = minimize_scalar(
        negative_log_likelihood,
        bounds=np.log(TEMPERATURE_BOUNDS),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(fitted.x))


def temperature_scaled(predictions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """The predictions with each scorer's probabilities scaled by its own temperature: the
    model's (val, test, external sets) fitted on val, the fold models' (out-of-fold, ensembles)
    on out-of-fold when there are any; and {fit split: temperature}."""
    scaled, temperatures = predictions.copy(), {}
    of_folds = predictions["split"].map(splits.is_cross_validated).to_numpy(dtype=bool)
    for fit_split, rows in (("val", ~of_folds), (splits.OUT_OF_FOLD, of_folds)):
        if not rows.any():
            continue
        fit = predictions[predictions["split"] == fit_split]
        temperature = fit_temperature(fit["label"].to_numpy(), fit["probability"].to_numpy())
        scaled.loc[rows, "probability"] = apply_temperature(
            predictions.loc[rows, "probability"], temperature
        )
        temperatures[fit_split] = temperature
    return scaled, temperatures


def split_calibration(predictions: pd.DataFrame) -> dict:
    """{split: {brier, ece}} of every split of the predictions, in their order."""
    return {
        split: metrics.calibration_scores(rows["label"].to_numpy(), rows["probability"].to_numpy())
        for split, rows in predictions.groupby("split", sort=False)
    }


def summary(before: pd.DataFrame, after: pd.DataFrame, temperatures: dict[str, float]) -> dict:
    """The metrics document's `calibration` entry: the model's temperature and the Brier score and
    ECE of every split before and after scaling (the fold models' temperature is in
    `cross_validation`)."""
    return {
        "method": "temperature",
        "temperature": temperatures["val"],
        "fitted_on": "val",
        "ece_bins": metrics.ECE_BINS,
        "before": split_calibration(before),
        "after": split_calibration(after),
    }
