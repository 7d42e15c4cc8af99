"""The sections of the evaluation document, each computed beside the report section that shows it.

`SECTIONS` is the one list of them: the evaluate stage computes each, in order, for every scorer
(the model, the baseline) or for the model alone, from that scorer's predictions; the review report
(`report.write_report`) shows them in the same order. A new section is a function that computes
it, one that shows it, and one line in `SECTIONS` (its key is also a field of
`document.Evaluation`, which types the document). The scorers themselves are
`assessment.SCORERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medcls.evaluation import cases, paired, splits, subgroups, tables
from medcls.params import SubgroupMinSize, ThresholdRule

MODEL, BASELINE = "model", "baseline"
# Test images of each kind (most confident errors, closest to the threshold) given thumbnails
CASES = 8


@dataclass
class Scored:
    """One scorer's predictions (a row per image and split) and its part of the evaluation
    document: the model's is the document itself, another scorer's the document's entry `name`."""

    name: str
    rows: pd.DataFrame
    document: dict = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)  # fit split -> its temperature


@dataclass(frozen=True)
class Plan:
    """What every section is computed with: the settings, and every scorer's predictions."""

    scorers: Mapping[str, Scored]  # the model first
    rule: ThresholdRule
    n_bootstrap: int
    seed: int
    folded: bool  # split.folds > 1: out-of-fold and fold-ensemble rows
    source_of: pd.Series | None  # image id -> source, for a dataset of several sources
    external: list[str]  # the external test sets
    external_images: str
    by_group: bool  # external intervals resample whole groups
    # scored split -> each image's subgroup values (`subgroups.values_by_split`)
    subgroup_values: dict[str, pd.DataFrame]
    subgroup_limit: SubgroupMinSize

    @property
    def options(self) -> dict:
        return dict(rule=self.rule, n_bootstrap=self.n_bootstrap, seed=self.seed)

    @property
    def external_options(self) -> dict:
        return dict(
            images=self.external_images,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
            by_group=self.by_group,
        )


@dataclass(frozen=True)
class Page:
    """What a report section may show besides the document: the class names [negative,
    positive], the report's path and the folder of the single cases' thumbnails (or None)."""

    classes: list[str]
    out_md: Path
    cases: Path | None


@dataclass(frozen=True)
class Section:
    """The document entry `key`: `compute` gives it (and any entries beside it) from one scorer's
    predictions, or nothing where it does not apply (None: a scorer writes it); `show` gives its
    report lines, called only when the document has it."""

    key: str
    compute: Callable[[Scored, Plan], dict] | None
    show: Callable[[Mapping, Page], list[str]]
    model_only: bool = False


def _val_and_test(scored: Scored, plan: Plan) -> dict:
    return splits.evaluate_predictions(scored.rows, **plan.options)


def _show_metrics(document: Mapping, page: Page) -> list[str]:
    return tables.titled("Metrics", *tables.metrics_table(document))


def _show_baseline(document: Mapping, page: Page) -> list[str]:
    return [f"Baseline: {document[BASELINE]['method']}, with its own threshold.", ""]


def _by_source(scored: Scored, plan: Plan) -> dict:
    if plan.source_of is None:
        return {}
    tables_by_source = splits.by_source(
        scored.rows,
        plan.source_of,
        scored.document["threshold"],
        n_bootstrap=plan.n_bootstrap,
        seed=plan.seed,
    )
    return {"by_source": tables_by_source}


def _show_sources(document: Mapping, page: Page) -> list[str]:
    return tables.titled(
        "Per source",
        "Each source's images on their own, at the pooled threshold "
        f"{document['threshold']:.3f}. A held-out source (hold_out: true) has test images "
        "only: it was never trained on.",
        "",
        *tables.source_table(document),
    )


def _cross_validation(scored: Scored, plan: Plan) -> dict:
    if not plan.folded:
        return {}
    entries = splits.cross_validated(scored.rows, **plan.options)
    if splits.OUT_OF_FOLD in scored.temperatures:  # the fold models' own temperature
        entries["cross_validation"]["temperature"] = scored.temperatures[splits.OUT_OF_FOLD]
    return entries


def _show_cross_validation(document: Mapping, page: Page) -> list[str]:
    return tables.titled("Cross-validation", *tables.cross_validation_section(document))


def _versus_baseline(scored: Scored, plan: Plan) -> dict:
    """Model minus baseline AUC on the same images of test (with folds also out-of-fold and the
    ensemble on test) and of every external test set."""
    if BASELINE not in plan.scorers:
        return {}
    rows = paired.with_baseline(scored.rows, plan.scorers[BASELINE].rows)
    pairing = dict(n_resamples=plan.n_bootstrap, seed=plan.seed)
    folded = [splits.OUT_OF_FOLD, splits.ENSEMBLE_TEST] if plan.folded else []
    pairs = paired.versus_baseline(rows, ["test", *folded], **pairing)
    external_scorers = [("external", splits.external_split)]
    if plan.folded:
        external_scorers.append(("ensemble_external", splits.ensemble_external_split))
    for key, split_of in external_scorers if plan.external else ():
        external_pairs = paired.versus_baseline(
            rows,
            [split_of(other) for other in plan.external],
            by_group=plan.by_group,
            **pairing,
        )
        pairs[key] = dict(zip(plan.external, external_pairs.values()))
    return {"versus_baseline": pairs}


def _show_versus_baseline(document: Mapping, page: Page) -> list[str]:
    return tables.titled("Model vs baseline", *tables.baseline_comparison(document))


def _show_calibration(document: Mapping, page: Page) -> list[str]:
    return tables.titled("Calibration", *tables.calibration_section(document))


def _external(scored: Scored, plan: Plan) -> dict:
    """Each external test set at the model's threshold, and with folds at the fold models'."""
    if not plan.external:
        return {}
    options = plan.external_options
    entries = {
        "external": splits.external_metrics(
            scored.rows, scored.document["threshold"], plan.external, **options
        )
    }
    if plan.folded:
        threshold = scored.document["cross_validation"]["threshold"]
        entries["ensemble_external"] = splits.external_metrics(
            scored.rows, threshold, plan.external, ensemble=True, **options
        )
    return entries


def _show_external(document: Mapping, page: Page) -> list[str]:
    units = {split["bootstrap_unit"] for split in document["external"].values()}
    resampled = "whole patients (groups)" if units == {"group"} else "images"
    return tables.titled(
        "External test sets",
        f"Other datasets, prepared with this model's image size and ROI params, classes matched "
        f"by label; threshold {document['threshold']:.3f} from this dataset's validation (the "
        f"fold ensemble's: chosen out-of-fold), not re-tuned. The 95 % intervals resample "
        f"{resampled}.",
        "",
        *tables.external_table(document),
    )


def _subgroups(scored: Scored, plan: Plan) -> dict:
    if not plan.subgroup_values:
        return {}
    options = dict(limit=plan.subgroup_limit, n_bootstrap=plan.n_bootstrap, seed=plan.seed)
    rows, threshold = scored.rows, scored.document["threshold"]
    scored_splits = {
        split: subgroups.score_subgroups(rows[rows["split"] == split], values, threshold, **options)
        for split, values in plan.subgroup_values.items()
    }
    return {"subgroups": scored_splits}


def _show_subgroups(document: Mapping, page: Page) -> list[str]:
    return tables.titled(
        "Subgroups",
        f"Each group scored on its own at the threshold {document['threshold']:.3f}; the 95 % "
        "intervals resample whole patients. A group of one class is scored with every image "
        "of the other class; a group below `evaluate.subgroup_min_size` is not scored.",
        "",
        *subgroups.markdown(document["subgroups"]),
    )


def _cases(scored: Scored, plan: Plan) -> dict:
    test = scored.rows[scored.rows["split"] == "test"]
    return {"cases": cases.review_cases(test, scored.document["threshold"], CASES)}


def _show_cases(document: Mapping, page: Page) -> list[str]:
    if page.cases is None:
        return []
    return tables.titled(
        "Single cases",
        "Grad-CAM of the model's most confident errors on test and of the test images closest "
        "to the threshold (those another model is likeliest to decide otherwise).",
        *cases.markdown(document["cases"], page.classes, page.cases, page.out_md.parent),
    )


# In order: a section reads the entries of those before it (the thresholds) and is shown after
# them. The baseline's method and the calibration are written by their scorers.
SECTIONS = (
    Section("test", _val_and_test, _show_metrics),
    Section(BASELINE, None, _show_baseline),
    Section("by_source", _by_source, _show_sources),
    Section("cross_validation", _cross_validation, _show_cross_validation),
    Section("versus_baseline", _versus_baseline, _show_versus_baseline, model_only=True),
    Section("calibration", None, _show_calibration),
    Section("external", _external, _show_external),
    Section("subgroups", _subgroups, _show_subgroups),
    Section("cases", _cases, _show_cases, model_only=True),
)


def compute(plan: Plan) -> dict:
    """The evaluation document: every section of every scorer; another scorer's document is the
    entry of its name."""
    model = plan.scorers[MODEL]
    for section in SECTIONS:
        for scored in plan.scorers.values():
            if section.compute is None or (section.model_only and scored is not model):
                continue
            scored.document |= section.compute(scored, plan)
    others = {name: scored.document for name, scored in plan.scorers.items() if name != MODEL}
    return model.document | others
