"""The evaluate stage's two documents as typed models.

`Evaluation` is everything evaluate measured (`reports/<name>.json`, kept in git but not a DVC
metric): every scorer's counts, rates, intervals, calibration and paired differences.
`Headline` is the few scalars a reviewer compares across runs (`metrics/<name>.json`, the DVC
metric): AUC, sensitivity and specificity with their 95 % bounds, threshold, ECE and Brier score,
and the paired AUC difference to the baseline. The JSON schema of either is
`Model.model_json_schema()`. Undefined values are null, never NaN.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from medcls.evaluation.splits import external_split

# A percentile-bootstrap 95 % interval: [low, high], or [null, null] with no usable resample
Interval = tuple[float | None, float | None]
# The document's entries of external test sets: the model's, and the fold models' ensemble's
EXTERNAL_KEYS = ("external", "ensemble_external")


class Strict(BaseModel):
    """Unknown keys and NaN/infinite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SplitScores(Strict):
    """One scorer on one split's images at its threshold."""

    tp: int
    fp: int
    tn: int
    fn: int
    n: int
    positives: int
    negatives: int
    accuracy: float | None
    balanced_accuracy: float | None
    sensitivity: float | None
    specificity: float | None
    precision: float | None
    f1: float | None
    auc: float | None
    pr_auc: float | None
    brier: float
    ece: float
    auc_ci95: Interval
    accuracy_ci95: Interval
    sensitivity_ci95: Interval
    specificity_ci95: Interval


class ExternalScores(SplitScores):
    """An external test set, at the training dataset's threshold (never re-tuned on it)."""

    bootstrap_unit: Literal["group", "image"]
    images: Literal["all", "test"]


class CrossValidation(Strict):
    """split.folds > 1: the threshold chosen on the out-of-fold predictions, and each fold
    model's AUC on its own fold."""

    folds: int
    threshold: float
    threshold_rule: str
    fold_val_auc: list[float | None]
    fold_val_auc_mean: float | None
    fold_val_auc_sd: float | None
    temperature: float | None = None


class CalibrationScores(Strict):
    brier: float
    ece: float


class Calibration(Strict):
    """Temperature scaling: Brier score and ECE of every predictions split before and after."""

    method: Literal["temperature"]
    temperature: float
    fitted_on: Literal["val"]
    ece_bins: int
    before: dict[str, CalibrationScores]
    after: dict[str, CalibrationScores]


class PairedDifference(Strict):
    """Model minus baseline AUC on the same images, with its paired bootstrap interval."""

    auc_difference: float | None
    auc_difference_ci95: Interval
    method: str


class VersusBaseline(Strict):
    test: PairedDifference
    out_of_fold: PairedDifference | None = None
    ensemble_test: PairedDifference | None = None
    external: dict[str, PairedDifference] | None = None
    ensemble_external: dict[str, PairedDifference] | None = None


class SubgroupScores(Strict):
    """One group of a subgroup (`evaluate.subgroups`): its images and the classes it is scored on
    (with `scored_with` the other class's images added to a one-class group); when it reaches
    `evaluate.subgroup_min_size`, its counts and rates at the threshold with intervals resampling
    patients, else why it is `too_small`."""

    n: int
    positives: int
    negatives: int
    scored: bool
    scored_with: str | None = None
    too_small: str | None = None
    tp: int | None = None
    fp: int | None = None
    tn: int | None = None
    fn: int | None = None
    auc: float | None = None
    auc_ci95: Interval | None = None
    sensitivity: float | None = None
    sensitivity_ci95: Interval | None = None
    specificity: float | None = None
    specificity_ci95: Interval | None = None


# scored set (`test`, `external:<set>`) -> subgroup -> value -> its scores
Subgroups = dict[str, dict[str, dict[str, SubgroupScores]]]


class Case(Strict):
    id: str
    label: int
    probability: float


class Cases(Strict):
    """The test images a reviewer gets Grad-CAM thumbnails of (`plots/<name>/cases/`)."""

    confident_errors: list[Case]
    borderline: list[Case]


class Scores(Strict):
    """One scorer (the model, or the baseline) on every split it was scored on."""

    threshold: float
    threshold_rule: str
    val: SplitScores
    test: SplitScores
    by_source: dict[str, dict[Literal["val", "test"], SplitScores]] | None = None
    external: dict[str, ExternalScores] | None = None
    cross_validation: CrossValidation | None = None
    out_of_fold: SplitScores | None = None
    ensemble_test: SplitScores | None = None
    ensemble_external: dict[str, ExternalScores] | None = None
    subgroups: Subgroups | None = None

    @model_validator(mode="after")
    def _folds_have_their_predictions(self) -> Scores:
        if self.cross_validation is not None and None in (self.out_of_fold, self.ensemble_test):
            raise ValueError("cross_validation needs out_of_fold and ensemble_test beside it")
        return self


class BaselineScores(Scores):
    method: str


class Evaluation(Scores):
    """`reports/<name>.json`: the model's scores, and what changed or was compared to them."""

    tta: list[Literal["flip_horizontal", "zoom_in"]] | None = None
    calibration: Calibration | None = None
    baseline: BaselineScores | None = None
    versus_baseline: VersusBaseline | None = None
    cases: Cases | None = None

    @model_validator(mode="after")
    def _pairs_have_a_baseline(self) -> Evaluation:
        if self.versus_baseline is not None and self.baseline is None:
            raise ValueError("versus_baseline needs the baseline it compares with")
        return self

    def as_json(self) -> dict:
        """The document as written: keys absent when their feature is off."""
        return self.model_dump(mode="json", exclude_unset=True)


class ValHeadline(Strict):
    n: int
    auc: float | None
    auc_low: float | None
    auc_high: float | None


class TestHeadline(ValHeadline):
    sensitivity: float | None
    sensitivity_low: float | None
    sensitivity_high: float | None
    specificity: float | None
    specificity_low: float | None
    specificity_high: float | None
    threshold: float
    ece: float
    brier: float
    vs_baseline: float | None = None
    vs_baseline_low: float | None = None
    vs_baseline_high: float | None = None
    worst_subgroup_auc: float | None = None  # with evaluate.subgroups: the lowest group AUC


class Headline(Strict):
    """`metrics/<name>.json`: scalars only, so DVC shows and diffs every one of them."""

    val: ValHeadline
    test: TestHeadline
    external: dict[str, TestHeadline] | None = None
    out_of_fold: TestHeadline | None = None
    ensemble: TestHeadline | None = None
    ensemble_external: dict[str, TestHeadline] | None = None

    def as_json(self) -> dict:
        return self.model_dump(mode="json", exclude_unset=True)


def _bounds(name: str, point: float | None, interval: Interval) -> dict:
    return {name: point, f"{name}_low": interval[0], f"{name}_high": interval[1]}


def _val_headline(scores: SplitScores) -> ValHeadline:
    return ValHeadline(n=scores.n, **_bounds("auc", scores.auc, scores.auc_ci95))


def _worst_subgroup(groups: dict[str, dict[str, SubgroupScores]] | None) -> dict:
    """The lowest AUC of the scored groups of every subgroup: how bad the model is where it is
    worst (none without subgroups; null when no group could be scored)."""
    if groups is None:
        return {}
    aucs = [group.auc for by_value in groups.values() for group in by_value.values()]
    defined = [auc for auc in aucs if auc is not None]
    return {"worst_subgroup_auc": min(defined) if defined else None}


def _test_headline(
    scores: SplitScores,
    threshold: float,
    pair: PairedDifference | None,
    groups: dict[str, dict[str, SubgroupScores]] | None = None,
) -> TestHeadline:
    versus = _bounds("vs_baseline", pair.auc_difference, pair.auc_difference_ci95) if pair else {}
    return TestHeadline(
        **_worst_subgroup(groups),
        n=scores.n,
        **_bounds("auc", scores.auc, scores.auc_ci95),
        **_bounds("sensitivity", scores.sensitivity, scores.sensitivity_ci95),
        **_bounds("specificity", scores.specificity, scores.specificity_ci95),
        threshold=threshold,
        ece=scores.ece,
        brier=scores.brier,
        **versus,
    )


def headline(evaluation: Evaluation) -> Headline:
    """The headline scalars of an evaluation: val and test, each external set, and with folds the
    out-of-fold predictions and the fold ensemble (at the fold models' threshold)."""
    pairs = evaluation.versus_baseline  # None without a baseline: getattr(None, ...) is None
    subgroups = evaluation.subgroups or {}

    def external_headlines(
        sets: dict[str, ExternalScores] | None,
        threshold: float,
        set_pairs: dict[str, PairedDifference] | None,
        with_subgroups: bool = False,
    ) -> dict[str, TestHeadline] | None:
        if sets is None:
            return None
        return {
            name: _test_headline(
                scores,
                threshold,
                (set_pairs or {}).get(name),
                subgroups.get(external_split(name)) if with_subgroups else None,
            )
            for name, scores in sets.items()
        }

    fields: dict = {
        "val": _val_headline(evaluation.val),
        "test": _test_headline(
            evaluation.test,
            evaluation.threshold,
            getattr(pairs, "test", None),
            subgroups.get("test"),
        ),
        "external": external_headlines(
            evaluation.external,
            evaluation.threshold,
            getattr(pairs, "external", None),
            with_subgroups=True,
        ),
    }
    folded = evaluation.cross_validation
    if folded is not None:
        fields |= {
            "out_of_fold": _test_headline(
                evaluation.out_of_fold, folded.threshold, getattr(pairs, "out_of_fold", None)
            ),
            "ensemble": _test_headline(
                evaluation.ensemble_test, folded.threshold, getattr(pairs, "ensemble_test", None)
            ),
            "ensemble_external": external_headlines(
                evaluation.ensemble_external,
                folded.threshold,
                getattr(pairs, "ensemble_external", None),
            ),
        }
    return Headline(**{key: value for key, value in fields.items() if value is not None})
