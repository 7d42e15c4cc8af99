"""The Markdown review report `reports/<name>.md`: the metrics document as tables, plus its figures.

Everything in it is read from the metrics document the evaluate stage wrote, so the report cannot
disagree with `metrics/<name>.json`; it only lays the numbers out for a reviewer (GitHub renders it,
figures included, as they are linked relative to the report).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from medcls.evaluation import subgroups
from medcls.evaluation.cases import markdown as case_tables
from medcls.evaluation.document import EXTERNAL_KEYS
from medcls.evaluation.paired import auc_verdict, difference_text

SPLITS = ("val", "test")
# (row label, metric key, key of its 95 % interval or None)
METRIC_ROWS = (
    ("AUC", "auc", "auc_ci95"),
    ("accuracy", "accuracy", "accuracy_ci95"),
    ("balanced accuracy", "balanced_accuracy", None),
    ("sensitivity", "sensitivity", None),
    ("specificity", "specificity", None),
    ("precision", "precision", None),
    ("F1", "f1", None),
    ("PR AUC", "pr_auc", None),
    ("Brier score", "brier", None),
    ("ECE", "ece", None),
    ("images", "n", None),
)
UNDEFINED = "n/a"


def _number(value: float | int | None) -> str:
    if value is None:
        return UNDEFINED
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _cell(split: Mapping, key: str, interval_key: str | None) -> str:
    """A value, with its 95 % interval when it has a defined one."""
    text = _number(split[key])
    interval = split.get(interval_key) if interval_key else None
    if interval and None not in interval:
        text += f" ({_number(interval[0])}–{_number(interval[1])})"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def metrics_table(document: Mapping) -> list[str]:
    """Model columns for val and test, then the baseline's when the document has one."""
    owners = [("model", document)]
    if "baseline" in document:
        owners.append(("baseline", document["baseline"]))
    header = ["metric"] + [f"{who} {split}" for who, _ in owners for split in SPLITS]
    threshold_row = ["threshold (chosen on val)"] + [
        _number(owner["threshold"]) for _, owner in owners for _ in SPLITS
    ]
    rows = [
        [label] + [_cell(owner[split], key, interval) for _, owner in owners for split in SPLITS]
        for label, key, interval in METRIC_ROWS
    ]
    return _table(header, [threshold_row, *rows])


def _versus_baseline_verdict(pair: Mapping) -> str:
    return auc_verdict(
        pair["auc_difference_ci95"],
        better="the model beats the baseline",
        worse="the baseline beats the model",
        same="no evidence of a difference",
    )


def baseline_comparison(document: Mapping) -> list[str]:
    """One sentence per split: does the model beat the baseline on the same images, how surely."""
    lines = []
    for split, pair in document.get("versus_baseline", {}).items():
        if split in EXTERNAL_KEYS:
            continue  # in the external test sets' table
        lines.append(
            f"- {split}: AUC {_number(document[split]['auc'])} vs "
            f"{_number(document['baseline'][split]['auc'])}, model − baseline "
            f"{difference_text(pair['auc_difference'], pair['auc_difference_ci95'])}: "
            f"**{_versus_baseline_verdict(pair)}** (95 % interval, {pair['method']})."
        )
    return lines


def external_table(document: Mapping) -> list[str]:
    """One row per external test set and scorer (the model at its own threshold, and with
    cross-validation the fold models' ensemble at theirs), beside the baseline's."""
    rows = []
    for key, scorer in zip(EXTERNAL_KEYS, ("model", "fold ensemble"), strict=True):
        rows += _external_rows(document, key, scorer)
    header = [
        "external test set",
        "scored by",
        "images",
        "AUC",
        "sensitivity",
        "specificity",
        "accuracy",
        "baseline AUC",
        "model − baseline AUC",
    ]
    return _table(header, rows)


def _external_rows(document: Mapping, key: str, scorer: str) -> list[list[str]]:
    pairs = document.get("versus_baseline", {}).get(key, {})
    baseline = document.get("baseline", {}).get(key, {})
    rows = []
    for name, split in document.get(key, {}).items():
        pair = pairs.get(name)
        rows.append(
            [
                name,
                scorer,
                f"{split['n']} ({split['images']})",
                _cell(split, "auc", "auc_ci95"),
                _number(split["sensitivity"]),
                _number(split["specificity"]),
                _cell(split, "accuracy", "accuracy_ci95"),
                _cell(baseline[name], "auc", "auc_ci95") if name in baseline else UNDEFINED,
                f"{difference_text(pair['auc_difference'], pair['auc_difference_ci95'])}: "
                f"{_versus_baseline_verdict(pair)}"
                if pair
                else UNDEFINED,
            ]
        )
    return rows


def calibration_section(document: Mapping) -> list[str]:
    """The temperature(s) and each split's Brier score and ECE before and after scaling."""
    settings = document["calibration"]
    folded = document.get("cross_validation", {}).get("temperature")
    fold_text = (
        f"; the fold models' temperature, fitted on their out-of-fold predictions and applied to "
        f"them and to the ensembles, is {folded:.3f}"
        if folded is not None
        else ""
    )
    rows = [
        [
            split,
            f"{_number(before['brier'])} → {_number(settings['after'][split]['brier'])}",
            f"{_number(before['ece'])} → {_number(settings['after'][split]['ece'])}",
        ]
        for split, before in settings["before"].items()
    ]
    return [
        f"Temperature scaling: every probability of the model is sigmoid(logit(p) / T) with "
        f"T = {settings['temperature']:.3f}, fitted on {settings['fitted_on']} (negative "
        f"log-likelihood){fold_text}. Ranks, AUC and the decisions at the threshold chosen on "
        f"validation are unchanged; the baseline is not scaled. ECE over {settings['ece_bins']} "
        "equal-width probability bins.",
        "",
        *_table(["split", "Brier score (before → after)", "ECE (before → after)"], rows),
    ]


def source_table(document: Mapping) -> list[str]:
    """One row per source and split (a dataset of several sources): the model's metrics at the
    pooled threshold on that source's images, and the baseline's AUC on them."""
    baseline = document.get("baseline", {}).get("by_source", {})
    rows = [
        [
            source,
            split_name,
            str(split["n"]),
            _cell(split, "auc", "auc_ci95"),
            _number(split["sensitivity"]),
            _number(split["specificity"]),
            _cell(baseline[source][split_name], "auc", "auc_ci95")
            if split_name in baseline.get(source, {})
            else UNDEFINED,
        ]
        for source, splits in document["by_source"].items()
        for split_name, split in splits.items()
    ]
    header = ["source", "split", "images", "AUC", "sensitivity", "specificity", "baseline AUC"]
    return _table(header, rows)


def cross_validation_section(document: Mapping) -> list[str]:
    """Out-of-fold and ensemble-test metrics beside the baseline's, and the folds' own AUCs."""
    settings = document["cross_validation"]
    owners = [("model", document)]
    if "baseline" in document:
        owners.append(("baseline", document["baseline"]))
    splits = (("out-of-fold", "out_of_fold"), ("ensemble test", "ensemble_test"))
    header = ["metric"] + [f"{who} {label}" for who, _ in owners for label, _ in splits]
    threshold_row = ["threshold (chosen out-of-fold)"] + [
        _number(owner["cross_validation"]["threshold"]) for _, owner in owners for _ in splits
    ]
    rows = [
        [label] + [_cell(owner[split], key, interval) for _, owner in owners for _, split in splits]
        for label, key, interval in METRIC_ROWS
    ]
    fold_aucs = ", ".join(_number(auc) for auc in settings["fold_val_auc"])
    return [
        f"{settings['folds']} grouped, stratified folds of train + val: every image is scored by "
        "the fold model that did not see it (out-of-fold), the test split by the ensemble (mean "
        f"probability of the {settings['folds']} fold models), both at one threshold chosen on "
        "the out-of-fold predictions; `medcls predict` uses this ensemble and threshold.",
        "",
        *_table(header, [threshold_row, *rows]),
        "",
        f"Each fold model's AUC on its own fold: {fold_aucs} (mean "
        f"{_number(settings['fold_val_auc_mean'])} ± sd {_number(settings['fold_val_auc_sd'])}).",
    ]


def _tta_text(document: Mapping) -> str:
    if not document.get("tta"):
        return ""
    return (
        " The model's probability of an image is the mean over the image and its views "
        f"{', '.join(document['tta'])} (test-time augmentation; Grad-CAM explains the plain image)."
    )


def confusion_table(split: Mapping, classes: Sequence[str]) -> list[str]:
    """Rows actual, columns predicted, negative class first."""
    negative, positive = classes
    return _table(
        ["actual \\ predicted", negative, positive],
        [
            [negative, str(split["tn"]), str(split["fp"])],
            [positive, str(split["fn"]), str(split["tp"])],
        ],
    )


def _header(document: Mapping, classes: Sequence[str], name: str) -> list[str]:
    return [
        f"# {name}: evaluation report",
        "",
        f"Written by the evaluate stage from `reports/{name}.json`. Threshold "
        f"{document['threshold']:.3f} ({document.get('threshold_rule', 'rule not recorded')}), chosen on val and applied "
        "as is to test. AUC and accuracy show their 95 % bootstrap interval in parentheses; "
        f"positive class: {classes[1]}.{_tta_text(document)}",
        "",
        "## Metrics",
        "",
        *metrics_table(document),
        "",
    ]


def _titled(title: str, *lines: str) -> list[str]:
    """A report section: its heading, its lines and the blank line that ends it."""
    return [f"## {title}", "", *lines, ""]


def _baseline(document: Mapping) -> list[str]:
    if "baseline" not in document:
        return []
    return [f"Baseline: {document['baseline']['method']}, with its own threshold.", ""]


def _sources(document: Mapping) -> list[str]:
    if "by_source" not in document:
        return []
    return _titled(
        "Per source",
        "Each source's images on their own, at the pooled threshold "
        f"{document['threshold']:.3f}. A held-out source (hold_out: true) has test images "
        "only: it was never trained on.",
        "",
        *source_table(document),
    )


def _cross_validation(document: Mapping) -> list[str]:
    if "cross_validation" not in document:
        return []
    return _titled("Cross-validation", *cross_validation_section(document))


def _versus_baseline(document: Mapping) -> list[str]:
    if "versus_baseline" not in document:
        return []
    return _titled("Model vs baseline", *baseline_comparison(document))


def _calibration(document: Mapping) -> list[str]:
    if "calibration" not in document:
        return []
    return _titled("Calibration", *calibration_section(document))


def _external(document: Mapping) -> list[str]:
    if not document.get("external"):
        return []
    units = {split["bootstrap_unit"] for split in document["external"].values()}
    resampled = "whole patients (groups)" if units == {"group"} else "images"
    return _titled(
        "External test sets",
        f"Other datasets, prepared with this model's image size and ROI params, classes matched "
        f"by label; threshold {document['threshold']:.3f} from this dataset's validation (the "
        f"fold ensemble's: chosen out-of-fold), not re-tuned. The 95 % intervals resample "
        f"{resampled}.",
        "",
        *external_table(document),
    )


def _subgroups(document: Mapping) -> list[str]:
    if "subgroups" not in document:
        return []
    return _titled(
        "Subgroups",
        f"Each group scored on its own at the threshold {document['threshold']:.3f}; the 95 % "
        "intervals resample whole patients. A group of one class is scored with every image "
        "of the other class; a group below `evaluate.subgroup_min_size` is not scored.",
        "",
        *subgroups.markdown(document["subgroups"]),
    )


# The report's sections between the metrics table and the single cases, in order: each reads the
# document and gives its lines, or none when the document has no such part. The scored parts
# (cross-validation, per source, external test sets, subgroups) are computed by
# `assessment.SECTIONS`; a new part is a function there and one here.
SECTIONS = (
    _baseline,
    _sources,
    _cross_validation,
    _versus_baseline,
    _calibration,
    _external,
    _subgroups,
)


def _cases(
    document: Mapping, classes: Sequence[str], cases: Path | None, out_md: Path
) -> list[str]:
    if "cases" not in document or cases is None:
        return []
    return _titled(
        "Single cases",
        "Grad-CAM of the model's most confident errors on test and of the test images closest "
        "to the threshold (those another model is likeliest to decide otherwise).",
        *case_tables(document["cases"], list(classes), cases, out_md.parent),
    )


def _figures(name: str, figures: Sequence[Path], out_md: Path) -> list[str]:
    lines = [
        "",
        "## Figures",
        "",
        "ROC, precision-recall and calibration of every split, and the confusion matrix: "
        f"`dvc plots show` (data in `plots/{name}/`).",
    ]
    if figures:
        lines += [""]
        lines += [
            f"![{Path(figure).stem}]({Path(os.path.relpath(figure, out_md.parent)).as_posix()})"
            for figure in figures
        ]
    return lines


def write_report(
    document: Mapping,
    classes: Sequence[str],
    name: str,
    out_md: Path,
    figures: Sequence[Path],
    cases: Path | None = None,
) -> None:
    """Write the report for dataset `name`; `figures` (existing PNGs) are linked relative to it,
    and so are the thumbnails of the document's single cases in the folder `cases`."""
    missing = [str(figure) for figure in figures if not Path(figure).is_file()]
    if missing:
        raise FileNotFoundError(f"report {out_md}: figures not found: {', '.join(missing)}")
    if len(classes) != 2:
        raise ValueError(f"need [negative, positive] class names; got {list(classes)}")
    lines = _header(document, classes, name)
    for section in SECTIONS:
        lines += section(document)
    lines += [
        *_cases(document, classes, cases, out_md),
        f"## Confusion matrix (test, threshold {document['threshold']:.3f})",
        "",
        *confusion_table(document["test"], classes),
        *_figures(name, figures, out_md),
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines) + "\n")
