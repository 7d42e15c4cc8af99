"""Markdown tables of the evaluation document's parts, for the review report `reports/<name>.md`.

Every number is read from the document, so the report cannot disagree with it; undefined values
are shown as `n/a`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def number(value: float | int | None) -> str:
    if value is None:
        return UNDEFINED
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def cell(split: Mapping, key: str, interval_key: str | None) -> str:
    """A value, with its 95 % interval when it has a defined one."""
    text = number(split[key])
    interval = split.get(interval_key) if interval_key else None
    if interval and None not in interval:
        text += f" ({number(interval[0])}–{number(interval[1])})"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def metrics_table(document: Mapping) -> list[str]:
    """Model columns for val and test, then the baseline's when the document has one."""
    owners = [("model", document)]
    if "baseline" in document:
        owners.append(("baseline", document["baseline"]))
    header = ["metric"] + [f"{who} {split}" for who, _ in owners for split in SPLITS]
    threshold_row = ["threshold (chosen on val)"] + [
        number(owner["threshold"]) for _, owner in owners for _ in SPLITS
    ]
    rows = [
        [label] + [cell(owner[split], key, interval) for _, owner in owners for split in SPLITS]
        for label, key, interval in METRIC_ROWS
    ]
    return table(header, [threshold_row, *rows])


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
            f"- {split}: AUC {number(document[split]['auc'])} vs "
            f"{number(document['baseline'][split]['auc'])}, model − baseline "
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
    return table(header, rows)


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
                cell(split, "auc", "auc_ci95"),
                number(split["sensitivity"]),
                number(split["specificity"]),
                cell(split, "accuracy", "accuracy_ci95"),
                cell(baseline[name], "auc", "auc_ci95") if name in baseline else UNDEFINED,
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
            f"{number(before['brier'])} → {number(settings['after'][split]['brier'])}",
            f"{number(before['ece'])} → {number(settings['after'][split]['ece'])}",
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
        *table(["split", "Brier score (before → after)", "ECE (before → after)"], rows),
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
            cell(split, "auc", "auc_ci95"),
            number(split["sensitivity"]),
            number(split["specificity"]),
            cell(baseline[source][split_name], "auc", "auc_ci95")
            if split_name in baseline.get(source, {})
            else UNDEFINED,
        ]
        for source, splits in document["by_source"].items()
        for split_name, split in splits.items()
    ]
    header = ["source", "split", "images", "AUC", "sensitivity", "specificity", "baseline AUC"]
    return table(header, rows)


def cross_validation_section(document: Mapping) -> list[str]:
    """Out-of-fold and ensemble-test metrics beside the baseline's, and the folds' own AUCs."""
    settings = document["cross_validation"]
    owners = [("model", document)]
    if "baseline" in document:
        owners.append(("baseline", document["baseline"]))
    splits = (("out-of-fold", "out_of_fold"), ("ensemble test", "ensemble_test"))
    header = ["metric"] + [f"{who} {label}" for who, _ in owners for label, _ in splits]
    threshold_row = ["threshold (chosen out-of-fold)"] + [
        number(owner["cross_validation"]["threshold"]) for _, owner in owners for _ in splits
    ]
    rows = [
        [label] + [cell(owner[split], key, interval) for _, owner in owners for _, split in splits]
        for label, key, interval in METRIC_ROWS
    ]
    fold_aucs = ", ".join(number(auc) for auc in settings["fold_val_auc"])
    return [
        f"{settings['folds']} grouped, stratified folds of train + val: every image is scored by "
        "the fold model that did not see it (out-of-fold), the test split by the ensemble (mean "
        f"probability of the {settings['folds']} fold models), both at one threshold chosen on "
        "the out-of-fold predictions; `medcls predict` uses this ensemble and threshold.",
        "",
        *table(header, [threshold_row, *rows]),
        "",
        f"Each fold model's AUC on its own fold: {fold_aucs} (mean "
        f"{number(settings['fold_val_auc_mean'])} ± sd {number(settings['fold_val_auc_sd'])}).",
    ]


def confusion_table(split: Mapping, classes: Sequence[str]) -> list[str]:
    """Rows actual, columns predicted, negative class first."""
    negative, positive = classes
    return table(
        ["actual \\ predicted", negative, positive],
        [
            [negative, str(split["tn"]), str(split["fp"])],
            [positive, str(split["fn"]), str(split["tp"])],
        ],
    )


def titled(title: str, *lines: str) -> list[str]:
    """A report section: its heading, its lines and the blank line that ends it."""
    return [f"## {title}", "", *lines, ""]
