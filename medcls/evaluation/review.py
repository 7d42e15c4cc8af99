"""Commit vs commit (`medcls compare`): the working tree's predictions against those of a git revision, as one table.

`dvc metrics diff` shows a bare delta (test AUC 0.961 -> 0.965) that says nothing about noise. The
per-image predictions are committed (`data/predictions/<name>.csv`, `cache: false`), so both sides
can be paired on the images they share: the AUC difference with its paired interval, each side's
sensitivity and specificity at its own threshold (from `metrics/<name>.json` of that side) and
McNemar's test on their decisions. Only git and light libraries are needed (no TensorFlow, no DVC
cache), so the pull-request workflow can run it.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medcls.evaluation.metrics import (
    ENSEMBLE_TEST,
    OUT_OF_FOLD,
    ensemble_external_split,
    external_split,
    is_cross_validated,
)
from medcls.evaluation.paired import (
    SIGNIFICANCE,
    auc_verdict,
    compare_predictions,
    difference_text,
)
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import DatasetPaths

PREDICTIONS_DIR = DatasetPaths("").predictions.parent  # data/predictions, as paths.py has it
# Splits compared when either side has them: the test split, the cross-validation predictions
# (split.folds > 1), then the external test sets. Not val, on which each side chose its threshold.
COMPARED_SPLITS = ("test", OUT_OF_FOLD, ENSEMBLE_TEST)
HEADER = (
    "dataset",
    "split",
    "images",
    "AUC",
    "ΔAUC [95 % CI]",
    "sensitivity",
    "specificity",
    "McNemar p",
    "verdict",
)


class RevisionError(PipelineError, ValueError):
    """A revision git does not know, or a side whose files cannot be read."""


@dataclass(frozen=True)
class Side:
    """One side's predictions (id, split, label, probability) and the thresholds it decides at:
    the model's, and the fold ensemble's (chosen out-of-fold) when it was cross-validated."""

    predictions: pd.DataFrame
    threshold: float
    cross_validation_threshold: float | None = None

    def threshold_for(self, split: str) -> float:
        if is_cross_validated(split) and self.cross_validation_threshold is not None:
            return self.cross_validation_threshold
        return self.threshold


def _git(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)


def check_revision(revision: str) -> None:
    if _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").returncode != 0:
        raise RevisionError(f"unknown git revision {revision!r}; try a branch, tag or commit")


def _file_at(revision: str | None, path: Path) -> str | None:
    """A file's text in the working tree (revision None) or at `revision`; None when absent."""
    if revision is None:
        return path.read_text() if path.is_file() else None
    shown = _git("show", f"{revision}:./{path.as_posix()}")
    return shown.stdout if shown.returncode == 0 else None


def dataset_names(revision: str) -> list[str]:
    """Datasets with a predictions file in the working tree or at `revision`."""
    listed = _git("ls-tree", "--name-only", revision, "--", f"{PREDICTIONS_DIR.as_posix()}/")
    at_revision = {Path(line).stem for line in listed.stdout.splitlines() if line.endswith(".csv")}
    return sorted(at_revision | {path.stem for path in PREDICTIONS_DIR.glob("*.csv")})


def read_side(name: str, revision: str | None) -> Side | str:
    """The side of dataset `name` in the working tree (revision None) or at `revision`, or why
    it has none (no predictions file, no threshold)."""
    paths = DatasetPaths(name)
    csv_text, metrics_text = (
        _file_at(revision, paths.predictions),
        _file_at(revision, paths.metrics()),
    )
    if csv_text is None:
        return f"no {paths.predictions}"
    if metrics_text is None:
        return f"no {paths.metrics()} (its threshold)"
    document = json.loads(metrics_text)
    if document.get("threshold") is None:
        return f"no threshold in {paths.metrics()}"
    predictions = pd.read_csv(io.StringIO(csv_text), dtype={"id": str, "split": str})
    cross_validation = document.get("cross_validation", {}).get("threshold")
    return Side(predictions, float(document["threshold"]), cross_validation)


def paired_rows(new: Side, old: Side, split: str) -> tuple[pd.DataFrame, int, int]:
    """Rows of `split` both sides predicted with the same label, and the counts left out:
    (images on one side only, images whose label differs between the sides)."""
    columns = ["id", "label", "probability"]
    merged = pd.merge(
        new.predictions.loc[new.predictions["split"] == split, columns],
        old.predictions.loc[old.predictions["split"] == split, columns],
        on="id",
        how="outer",
        suffixes=("_new", "_old"),
        indicator=True,
        validate="one_to_one",
    )
    both = merged[merged["_merge"] == "both"]
    same_label = both["label_new"] == both["label_old"]
    return both[same_label], int((merged["_merge"] != "both").sum()), int((~same_label).sum())


def compared_splits(new: Side, old: Side) -> list[str]:
    """The splits of `COMPARED_SPLITS` and the external test sets (scored by the model, then by
    the fold ensemble) that either side holds."""
    held = set(new.predictions["split"]) | set(old.predictions["split"])
    external = [
        split
        for prefix in (external_split(""), ensemble_external_split(""))
        for split in sorted(held)
        if split.startswith(prefix)
    ]
    return [split for split in COMPARED_SPLITS if split in held] + external


def _before_now(before: float | None, now: float | None) -> str:
    text = [("n/a" if value is None else f"{value:.3f}") for value in (before, now)]
    return " → ".join(text)


def verdict(result: dict) -> str:
    """Plain words a reviewer can act on; McNemar is mentioned when the decisions changed."""
    if result["identical"]:
        return "identical predictions"
    words = auc_verdict(
        result["auc_difference_ci95"],
        better="evidence of an improvement",
        worse="evidence of a decline",
        same="no evidence of a change",
    )
    if result["mcnemar"]["p_value"] < SIGNIFICANCE:
        words += "; the decisions differ (McNemar)"
    return words


def table_row(name: str, split: str, result: dict) -> tuple[str, ...]:
    return (
        name,
        split,
        str(result["n"]),
        _before_now(result["auc_old"], result["auc_new"]),
        difference_text(result["auc_difference"], result["auc_difference_ci95"]),
        _before_now(result["sensitivity_old"], result["sensitivity_new"]),
        _before_now(result["specificity_old"], result["specificity_new"]),
        f"{result['mcnemar']['p_value']:.3g}",
        verdict(result),
    )


def compare_revision(revision: str, *, n_resamples: int = 2000, seed: int = 0) -> str:
    """The Markdown comparison of the working tree (run from the project root) with `revision`."""
    check_revision(revision)
    rows, notes = [], []
    for name in dataset_names(revision):
        new, old = read_side(name, None), read_side(name, revision)
        if isinstance(new, str) or isinstance(old, str):
            missing = [
                f"{why} ({where})"
                for why, where in ((new, "working tree"), (old, revision))
                if isinstance(why, str)
            ]
            notes.append(f"{name}: not compared: {'; '.join(missing)}")
            continue
        for split in compared_splits(new, old):
            paired, one_sided, relabelled = paired_rows(new, old, split)
            if one_sided or relabelled:
                notes.append(
                    f"{name} {split}: {len(paired)} images paired; left out {one_sided} predicted "
                    f"on one side only and {relabelled} whose label differs"
                )
            if paired.empty:
                continue
            result = compare_predictions(
                paired["label_new"],
                (paired["probability_new"], new.threshold_for(split)),
                (paired["probability_old"], old.threshold_for(split)),
                n_resamples=n_resamples,
                seed=seed,
            )
            rows.append(table_row(name, split, result))
    lines = [
        f"AUC, sensitivity and specificity as `{revision}` → this tree, each at its own threshold; "
        f"ΔAUC = this tree − `{revision}` with its paired bootstrap 95 % interval "
        f"({n_resamples} resamples of the same images); McNemar's test on the decisions.",
        "",
    ]
    if rows:
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        lines.append("No predictions to compare.")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
