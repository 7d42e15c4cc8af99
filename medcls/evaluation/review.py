"""Two revisions side by side, as a reviewer needs them: `medcls compare` and `medcls review`.

`dvc metrics diff` shows a bare delta (test AUC 0.961 -> 0.965) that says nothing about noise. The
per-image predictions are committed (`data/predictions/<name>.csv`, `cache: false`), so both sides
can be paired on the images they share: the AUC difference with its paired interval, each side's
sensitivity and specificity at its own threshold (from `metrics/<name>.json` of that side) and
McNemar's test on their decisions. The review adds what a pull-request comment needs around that
table: the params that changed, the headline metrics before and after with the new intervals, and
ROC curves of both sides on test.

A side is anything DVC can name (branch, tag, commit, experiment name) or the workspace: the name
is resolved by `dvc.scm.resolve_rev`, which looks experiment names up among the experiment refs
(`dvc.repo.experiments.utils.resolve_name`), and the files are read through `DVCFileSystem` at
that commit. They are committed to git, so neither TensorFlow nor the DVC cache is needed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from medcls.evaluation.metrics import (
    ENSEMBLE_TEST,
    OUT_OF_FOLD,
    document_keys,
    ensemble_external_split,
    external_split,
)
from medcls.evaluation.paired import (
    SIGNIFICANCE,
    auc_verdict,
    compare_predictions,
    difference_text,
    signed,
)
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import DatasetPaths

PREDICTIONS_DIR = PurePosixPath(DatasetPaths("").predictions.parent.as_posix())  # data/predictions
PREDICTION_COLUMNS = ("split", "id", "label", "probability")
# Lines git writes into a file it could not merge; pandas would read them as rows.
CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>")
# Splits compared when either side has them: the test split, the cross-validation predictions
# (split.folds > 1), then the external test sets. Not val, on which each side chose its threshold.
COMPARED_SPLITS = ("test", OUT_OF_FOLD, ENSEMBLE_TEST)
# The headline metrics file keeps the fold ensemble's test metrics under `ensemble`.
HEADLINE_SECTIONS = {ENSEMBLE_TEST: ("ensemble",)}
INTERVAL_BOUNDS = ("_low", "_high")
ROC_IMAGE = "roc.png"
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
    """A name DVC cannot resolve, a revision without predictions, or a file of one side that
    cannot be read as the pipeline writes it."""


class Revision:
    """One side of a comparison: the files of a revision DVC can name, or of the workspace (name
    None), read through DVC and checked as they are read."""

    def __init__(self, name: str | None, root: str = "."):
        from dvc.api import DVCFileSystem
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
        from dvc.scm import RevError, resolve_rev

        self.name, self.root = name, root
        try:
            with Repo(root) as repo:
                self.commit = None if name is None else resolve_rev(repo.scm, name)
            self.fs = DVCFileSystem(repo=root, rev=self.commit)
        except RevError as error:
            raise RevisionError(
                f"unknown revision {name!r}: not a branch, tag, commit or experiment name "
                "(`git branch -a`, `git tag`, `dvc exp list` show the names)"
            ) from error
        except DvcException as error:
            raise RevisionError(
                f"cannot read a DVC project at {root!r} ({error}); run this from the project root"
            ) from error
        self._documents: dict[str, object] = {}

    @property
    def label(self) -> str:
        """How tables and headings name this side."""
        return "the workspace" if self.name is None else f"`{self.name}`"

    def where(self, path: PurePosixPath | Path) -> str:
        """A file of this side, as an error message names it."""
        return f"{path.as_posix()} {'in the workspace' if self.name is None else f'at {self.name!r}'}"

    def _text(self, path: PurePosixPath | Path) -> str | None:
        return self.fs.read_text(path.as_posix()) if self.fs.isfile(path.as_posix()) else None

    def dataset_names(self) -> set[str]:
        """Datasets with a predictions file on this side."""
        if not self.fs.isdir(PREDICTIONS_DIR.as_posix()):
            return set()
        listed = self.fs.ls(PREDICTIONS_DIR.as_posix(), detail=False)
        return {PurePosixPath(path).stem for path in listed if path.endswith(".csv")}

    def _parsed(self, path: Path, parse: Callable[[str, str], object]) -> object:
        """`parse` of the file at `path` (read once), or None when this side has no such file."""
        key = path.as_posix()
        if key not in self._documents:
            text = self._text(path)
            self._documents[key] = None if text is None else parse(text, self.where(path))
        return self._documents[key]

    def predictions(self, name: str) -> pd.DataFrame | None:
        """`data/predictions/<name>.csv`, checked; None when this side has none."""
        return self._parsed(DatasetPaths(name).predictions, parse_predictions)

    def headline(self, name: str) -> dict | None:
        """`metrics/<name>.json` (the headline metrics), parsed; None when this side has none."""
        return self._parsed(DatasetPaths(name).metrics(), parse_headline)


def parse_predictions(text: str, where: str) -> pd.DataFrame:
    """A predictions CSV as the evaluate stage writes it, or a RevisionError naming `where` and
    what is wrong: merge-conflict markers, missing or non-numeric columns, an image twice."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(CONFLICT_MARKERS):
            raise RevisionError(
                f"{where}: line {number} is a git merge-conflict marker ({line[:7]}); resolve the "
                "conflict (re-run the evaluate stage) and commit the file"
            )
    try:
        predictions = pd.read_csv(io.StringIO(text), dtype={"id": str, "split": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RevisionError(f"{where} is not a readable CSV: {error}") from error
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions]
    if missing:
        raise RevisionError(f"{where} has no column {', '.join(missing)}; re-run the evaluate stage")
    for column in ("label", "probability"):
        values = pd.to_numeric(predictions[column], errors="coerce")
        if values.isna().any():
            row = predictions.loc[values.isna()].iloc[0]
            raise RevisionError(
                f"{where}: {column} {row[column]!r} of image {row['id']!r} is not a number"
            )
        predictions[column] = values
    repeated = predictions[predictions.duplicated(["split", "id"], keep=False)]
    if not repeated.empty:
        image, split = repeated.iloc[0][["id", "split"]]
        count = int(((repeated["id"] == image) & (repeated["split"] == split)).sum())
        raise RevisionError(
            f"{where}: image {image!r} is predicted {count} times in split {split!r} "
            f"({repeated.shape[0]} duplicate rows in all); each image needs one prediction per "
            "split: re-run the evaluate stage"
        )
    return predictions


def parse_headline(text: str, where: str) -> dict:
    """A headline metrics JSON object, or a RevisionError naming `where` (truncated, not JSON)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RevisionError(
            f"{where} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "re-run the evaluate stage or restore the file from git"
        ) from error
    if not isinstance(document, dict):
        raise RevisionError(f"{where} holds a JSON {type(document).__name__}, not an object")
    return document


def headline_section(split: str) -> tuple[str, ...]:
    """Where a predictions split's metrics are in the headline metrics file."""
    return HEADLINE_SECTIONS.get(split, document_keys(split))


@dataclass(frozen=True)
class Side:
    """One side's predictions (id, split, label, probability) and its headline metrics, which hold
    the threshold each split is decided at."""

    predictions: pd.DataFrame
    headline: Mapping

    def threshold_for(self, split: str) -> float | None:
        section: object = self.headline
        for key in headline_section(split):
            section = section.get(key) if isinstance(section, Mapping) else None
        threshold = section.get("threshold") if isinstance(section, Mapping) else None
        return None if threshold is None else float(threshold)


def read_side(revision: Revision, name: str) -> Side | str:
    """Dataset `name` on one side, or why it has none (no predictions file, no metrics file)."""
    paths = DatasetPaths(name)
    predictions = revision.predictions(name)
    if predictions is None:
        return f"no {revision.where(paths.predictions)}"
    headline = revision.headline(name)
    if headline is None:
        return f"no {revision.where(paths.metrics())} (its thresholds)"
    return Side(predictions, headline)


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


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def compared_datasets(old: Revision, new: Revision) -> list[str]:
    """Datasets with predictions on either side; a side without any is an error."""
    names = {side: side.dataset_names() for side in (old, new)}
    for side, held in names.items():
        if not held:
            raise RevisionError(
                f"no {side.where(PREDICTIONS_DIR / '*.csv')}: nothing to compare; run the "
                "pipeline there and commit its predictions"
            )
    return sorted(names[old] | names[new])


def paired_comparison(
    old: Revision, new: Revision, *, n_resamples: int = 2000, seed: int = 0
) -> str:
    """The Markdown table of `medcls compare`: `new` against `old` on the images both predicted."""
    rows, notes = [], []
    for name in compared_datasets(old, new):
        sides = {revision: read_side(revision, name) for revision in (new, old)}
        missing = [why for why in sides.values() if isinstance(why, str)]
        if missing:
            notes.append(f"{name}: not compared: {'; '.join(missing)}")
            continue
        new_side, old_side = sides[new], sides[old]
        for split in compared_splits(new_side, old_side):
            new_threshold, old_threshold = (
                side.threshold_for(split) for side in (new_side, old_side)
            )
            unset = [
                f"no {'.'.join(headline_section(split))}.threshold in "
                f"{revision.where(DatasetPaths(name).metrics())}"
                for revision, threshold in ((new, new_threshold), (old, old_threshold))
                if threshold is None
            ]
            if unset:
                notes.append(f"{name} {split}: not compared: {'; '.join(unset)}")
                continue
            paired, one_sided, relabelled = paired_rows(new_side, old_side, split)
            if one_sided or relabelled:
                notes.append(
                    f"{name} {split}: {len(paired)} images paired; left out {one_sided} predicted "
                    f"on one side only and {relabelled} whose label differs"
                )
            if paired.empty:
                continue
            result = compare_predictions(
                paired["label_new"],
                (paired["probability_new"], new_threshold),
                (paired["probability_old"], old_threshold),
                n_resamples=n_resamples,
                seed=seed,
            )
            rows.append(table_row(name, split, result))
    lines = [
        f"AUC, sensitivity and specificity as {old.label} → {new.label}, each at its own "
        f"threshold; ΔAUC = {new.label} − {old.label} with its paired bootstrap 95 % interval "
        f"({n_resamples} resamples of the same images); McNemar's test on the decisions.",
        "",
    ]
    lines += markdown_table(HEADER, rows) if rows else ["No predictions to compare."]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --- the review: params, headline metrics, paired table, ROC overlay --------------------------


def _value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _param(value: object) -> str:
    return "—" if value is None else str(value)


def params_changes(base: Revision, head: Revision) -> list[tuple[str, ...]]:
    """(file, param, base value, head value) of every param that differs, as `dvc params diff`
    finds them (the params files the stages of dvc.yaml name); values as written (lr 1e-05)."""
    from dvc.repo import Repo

    with Repo(base.root) as repo:
        changed = repo.params.diff(
            a_rev=base.commit or "workspace", b_rev=head.commit or "workspace"
        ).get("diff", {})
    return [
        (path, key, *(_param(change.get(side)) for side in ("old", "new")))
        for path, keys in sorted(changed.items())
        for key, change in keys.items()
    ]


def flattened(document: Mapping, prefix: str = "") -> Iterator[tuple[str, object]]:
    """The scalars of a nested mapping under dotted keys (`test.auc`), as DVC names metrics."""
    for key, value in document.items():
        if isinstance(value, Mapping):
            yield from flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _interval(values: Mapping[str, object], key: str) -> str:
    low, high = (values.get(f"{key}{bound}") for bound in INTERVAL_BOUNDS)
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"[{low:.3f}, {high:.3f}]"
    return "—"


def _change(before: object, after: object) -> str:
    numbers = all(isinstance(value, (int, float)) for value in (before, after))
    return signed(after - before) if numbers else "—"


def headline_changes(
    base: Revision, head: Revision, names: list[str]
) -> tuple[list[tuple[str, ...]], int]:
    """(dataset, metric, base, head, change, head's 95 % interval) of each headline value that
    differs; the intervals' bounds go in the last column, not rows of their own. Also the count of
    values left out because they are equal."""
    rows, unchanged = [], 0
    for name in names:
        before, after = (dict(flattened(side.headline(name) or {})) for side in (base, head))
        keys = [key for key in {**after, **before} if not key.endswith(INTERVAL_BOUNDS)]
        for key in keys:
            if before.get(key) == after.get(key):
                unchanged += 1
                continue
            rows.append(
                (
                    name,
                    key,
                    _value(before.get(key)),
                    _value(after.get(key)),
                    _change(before.get(key), after.get(key)),
                    _interval(after, key),
                )
            )
    return rows, unchanged


def roc_inputs_on_test(revision: Revision, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels and probabilities of the test split of one side, or None without both classes."""
    predictions = revision.predictions(name)
    if predictions is None:
        return None
    test = predictions[predictions["split"] == "test"]
    if test["label"].nunique() < 2:
        return None
    return test["label"].to_numpy(), test["probability"].to_numpy()


def write_roc_overlay(base: Revision, head: Revision, names: list[str], out_png: Path) -> bool:
    """ROC curves of both sides on test, one panel a dataset; False (no image) when no dataset
    has test predictions of both classes on both sides."""
    from medcls.evaluation import plots  # matplotlib: only for the review

    panels = {}
    for name in names:
        curves = {side.name or "workspace": roc_inputs_on_test(side, name) for side in (base, head)}
        if None not in curves.values():
            panels[f"{name}: test"] = curves
    if panels:
        plots.save_roc_panels_png(panels, out_png)
    return bool(panels)


def write_review(
    base: Revision, head: Revision, out_dir: Path, *, n_resamples: int = 2000, seed: int = 0
) -> Path:
    """`out_dir`/review.md (and the ROC image it shows): a pull-request comment on `head`
    against `base`. Returns the Markdown file."""
    names = compared_datasets(base, head)
    table = paired_comparison(base, head, n_resamples=n_resamples, seed=seed)
    params = params_changes(base, head)
    metrics, unchanged = headline_changes(base, head, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    with_roc = write_roc_overlay(base, head, names, out_dir / ROC_IMAGE)
    lines = [f"## {head.label} vs {base.label}", "", "### Params", ""]
    lines += (
        markdown_table(("file", "param", base.label, head.label), params)
        if params
        else ["No param changed."]
    )
    lines += ["", "### Headline metrics", ""]
    if metrics:
        header = ("dataset", "metric", base.label, head.label, "change", "95 % interval")
        lines += markdown_table(header, metrics)
        lines += ["", f"Intervals are {head.label}'s; {unchanged} unchanged values not shown."]
    else:
        lines.append(f"No headline metric changed ({unchanged} values).")
    lines += ["", "### Predictions paired on the same images", "", table.rstrip("\n"), ""]
    lines += ["### ROC on test", ""]
    lines.append(
        f"![ROC curves on test, {base.label} and {head.label}]({ROC_IMAGE})"
        if with_roc
        else "No test split with both classes on both sides: no ROC curves."
    )
    out_md = out_dir / "review.md"
    out_md.write_text("\n".join(lines) + "\n")
    return out_md
