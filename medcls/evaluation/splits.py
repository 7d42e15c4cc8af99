"""The metrics document of a predictions table, split by split, and the names of its splits.

A predictions table (`predictions/<name>.csv`) names each row's split; the names of the
cross-validated and external splits are made and read here only, since committed predictions
use them. The metric maths the sections are computed with is in `metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from medcls.evaluation.metrics import (
    binary_metrics,
    bootstrap_ci,
    checked_arrays,
    choose_threshold,
    roc_auc,
    rule_name,
)
from medcls.params import ThresholdRule
from medcls.pipeline.errors import MissingClassError

# Cross-validation (split.folds > 1): every train + val image scored by the fold model that did not
# see it, and the test split scored by the mean probability of the fold models.
OUT_OF_FOLD, ENSEMBLE_TEST = "out_of_fold", "ensemble_test"


def external_split(dataset: str) -> str:
    """The split name of an external test set's rows in a predictions table."""
    return f"external:{dataset}"


def ensemble_split(split: str) -> str:
    """The split name of the fold models' ensemble on `split` (test or an external test set)."""
    return f"ensemble_{split}"


def ensemble_external_split(dataset: str) -> str:
    """The split name of the fold models' ensemble on an external test set."""
    return ensemble_split(external_split(dataset))


def is_cross_validated(split: str) -> bool:
    """Whether rows of `split` are scored by the fold models (out-of-fold or their ensemble)."""
    return split == OUT_OF_FOLD or split.startswith("ensemble_")


def document_keys(split: str) -> tuple[str, ...]:
    """Where a split's metrics are in the metrics document: `external:x` under external.x,
    `ensemble_external:x` under ensemble_external.x, the others under their own name."""
    key, _, dataset = split.partition(":")
    return (key, dataset) if dataset else (key,)


def _split_arrays(predictions: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        found = sorted(predictions["split"].unique())
        raise ValueError(f"predictions have no {split!r} rows (splits found: {found})")
    return checked_arrays(rows["label"].to_numpy(), rows["probability"].to_numpy())


def check_val_classes(predictions: pd.DataFrame) -> None:
    """Every scorer's threshold is chosen on val, and the baseline is tuned on it: both need
    images of both classes there."""
    if predictions.loc[predictions["split"] == "val", "label"].nunique() < 2:
        raise MissingClassError(
            "the val split holds one class only, so no threshold can be chosen on it: the dataset "
            "needs usable images of both classes (see data/manifest/<name>_rejected.csv)"
        )


def evaluate_predictions(
    predictions: pd.DataFrame, *, rule: ThresholdRule, n_bootstrap: int, seed: int
) -> dict:
    """The metrics document: threshold chosen on val by `rule`, applied as is to val and test."""
    missing = {"split", "label", "probability"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack the columns {sorted(missing)}")
    arrays = {split: _split_arrays(predictions, split) for split in ("val", "test")}
    check_val_classes(predictions)
    threshold = choose_threshold(*arrays["val"], rule)
    document = {"threshold": threshold, "threshold_rule": rule_name(rule)}
    for split, (y_true, y_prob) in arrays.items():
        document[split] = {
            **binary_metrics(y_true, y_prob, threshold),
            **bootstrap_ci(y_true, y_prob, threshold, n_resamples=n_bootstrap, seed=seed),
        }
    return document


def cross_validated(
    predictions: pd.DataFrame, *, rule: ThresholdRule, n_bootstrap: int, seed: int
) -> dict:
    """Out-of-fold and ensemble-test metrics at one threshold chosen by `rule` on the out-of-fold
    predictions, and each fold model's AUC on its own fold (`fold` column) with their mean and
    standard deviation."""
    arrays = {split: _split_arrays(predictions, split) for split in (OUT_OF_FOLD, ENSEMBLE_TEST)}
    threshold = choose_threshold(*arrays[OUT_OF_FOLD], rule)
    out_of_fold = predictions[predictions["split"] == OUT_OF_FOLD]
    fold_aucs = [
        roc_auc(rows["label"].to_numpy(), rows["probability"].to_numpy())
        for _, rows in out_of_fold.groupby("fold", sort=True)
    ]
    defined = [auc for auc in fold_aucs if auc is not None]
    document = {
        "cross_validation": {
            "folds": len(fold_aucs),
            "threshold": threshold,
            "threshold_rule": rule_name(rule),
            "fold_val_auc": fold_aucs,
            "fold_val_auc_mean": float(np.mean(defined)) if defined else None,
            "fold_val_auc_sd": float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
        }
    }
    for split, (y_true, y_prob) in arrays.items():
        document[split] = {
            **binary_metrics(y_true, y_prob, threshold),
            **bootstrap_ci(y_true, y_prob, threshold, n_resamples=n_bootstrap, seed=seed),
        }
    return document


def by_source(
    predictions: pd.DataFrame,
    source_of: Mapping[str, str],
    threshold: float,
    *,
    n_bootstrap: int,
    seed: int,
) -> dict:
    """`{source: {split: metrics}}` of the val and test rows of each source (`source_of`: image id
    to source name) at the pooled `threshold`, for a split where the source has images: whether
    one model serves every hospital it was trained for, or only the largest."""
    document: dict = {}
    for split in ("val", "test"):
        rows = predictions[predictions["split"] == split]
        for source, source_rows in rows.groupby(rows["id"].map(source_of), sort=True):
            y_true, y_prob = checked_arrays(
                source_rows["label"].to_numpy(), source_rows["probability"].to_numpy()
            )
            document.setdefault(str(source), {})[split] = {
                **binary_metrics(y_true, y_prob, threshold),
                **bootstrap_ci(y_true, y_prob, threshold, n_resamples=n_bootstrap, seed=seed),
            }
    return document


def external_metrics(
    predictions: pd.DataFrame,
    threshold: float,
    names: Sequence[str],
    *,
    images: str,
    n_bootstrap: int,
    seed: int,
    by_group: bool,
    ensemble: bool = False,
) -> dict:
    """`{dataset: metrics}` of each external test set's rows (split `external:<dataset>`, or with
    `ensemble` the fold models' `ensemble_external:<dataset>`) at the training dataset's
    threshold, which is never re-tuned on them; `by_group` resamples whole groups; `images` says
    which of their images they are (all, test)."""
    options = dict(images=images, n_bootstrap=n_bootstrap, seed=seed, by_group=by_group)
    split_of = ensemble_external_split if ensemble else external_split
    return {
        name: _external_set_metrics(
            predictions[predictions["split"] == split_of(name)], threshold, **options
        )
        for name in names
    }


def _external_set_metrics(
    rows: pd.DataFrame,
    threshold: float,
    *,
    images: str,
    n_bootstrap: int,
    seed: int,
    by_group: bool,
) -> dict:
    if rows.empty:
        raise ValueError("an external test set has no predictions; run `dvc repro`")
    y_true, y_prob = checked_arrays(rows["label"].to_numpy(), rows["probability"].to_numpy())
    groups = rows["group"].to_numpy() if by_group else None
    intervals = bootstrap_ci(
        y_true, y_prob, threshold, n_resamples=n_bootstrap, seed=seed, groups=groups
    )
    return {
        **binary_metrics(y_true, y_prob, threshold),
        **intervals,
        "bootstrap_unit": "group" if by_group else "image",
        "images": images,
    }
