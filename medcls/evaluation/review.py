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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from medcls.evaluation.cases import CHANGED_COLUMNS, changed_decisions, thumbnail_name
from medcls.evaluation.paired import (
    SIGNIFICANCE,
    auc_verdict,
    compare_predictions,
    difference_text,
    signed,
)
from medcls.evaluation.splits import (
    ENSEMBLE_TEST,
    OUT_OF_FOLD,
    document_keys,
    ensemble_external_split,
    external_split,
)
from medcls.evaluation.subgroups import paired_by_subgroup
from medcls.params import PARAMS_FILE, SubgroupMinSize
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
TOP_CHANGED = 10  # changed decisions the review shows; `medcls compare` lists them all
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

    def subgroups(self, name: str) -> pd.DataFrame | None:
        """`data/subgroups/<name>.csv` (split, id and each image's subgroup values); None when
        this side has none."""
        return self._parsed(DatasetPaths(name).subgroups, parse_subgroups)

    def subgroup_limit(self, name: str) -> SubgroupMinSize:
        """`evaluate.subgroup_min_size` of dataset `name` in this side's params.yaml (the
        default where it has none)."""
        params = self._parsed(PARAMS_FILE, lambda text, where: YAML(typ="safe").load(text)) or {}
        dataset = (params.get("datasets") or {}).get(name) or {}
        limit = (dataset.get("evaluate") or {}).get("subgroup_min_size") or {}
        try:
            return SubgroupMinSize.model_validate(limit)
        except ValueError as error:
            raise RevisionError(
                f"{self.where(PARAMS_FILE)}: datasets.{name}.evaluate.subgroup_min_size is not "
                f"valid ({error.errors()[0]['msg']})"
            ) from error

    def model_card(self, name: str) -> dict | None:
        """`reports/<name>_card.json`, parsed; None when this side has none."""
        return self._parsed(DatasetPaths(name).card(".json"), parse_headline)

    def has_file(self, path: PurePosixPath | Path) -> bool:
        return self.fs.isfile(path.as_posix())

    def read_bytes(self, path: PurePosixPath | Path) -> bytes:
        return self.fs.read_bytes(path.as_posix())


def parse_predictions(text: str, where: str) -> pd.DataFrame:
    """A predictions CSV as the evaluate stage writes it, or a RevisionError naming `where` and
    what is wrong: merge-conflict markers, missing or non-numeric columns, an image twice."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(CONFLICT_MARKERS):
            raise RevisionError(
                f"{where}: line {number} is a git merge-conflict marker ({line[:7]}); resolve the "
                "conflict (re-run the evaluate stage) and commit the file"
            )
    predictions = _table(text, where, PREDICTION_COLUMNS, dtype={"id": str, "split": str})
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


def parse_subgroups(text: str, where: str) -> pd.DataFrame:
    """A subgroups CSV as the evaluate stage writes it (every value text), or a RevisionError."""
    return _table(text, where, ("split", "id"), dtype=str, keep_default_na=False)


def _table(text: str, where: str, columns: Sequence[str], **options) -> pd.DataFrame:
    """A CSV with at least `columns` (read with pandas `options`), or a RevisionError."""
    try:
        table = pd.read_csv(io.StringIO(text), **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RevisionError(f"{where} is not a readable CSV: {error}") from error
    missing = [column for column in columns if column not in table]
    if missing:
        raise RevisionError(f"{where} has no column {', '.join(missing)}; re-run the evaluate stage")
    return table


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


def _before_now(before: float | None, now: float | None, digits: int = 3) -> str:
    text = [("n/a" if value is None else f"{value:.{digits}f}") for value in (before, now)]
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


@dataclass
class Pairing:
    """What pairing two sides finds: the table rows (one per dataset and split), notes on what was
    left out, the images whose decision changed (dataset, split, then `cases.CHANGED_COLUMNS`) and
    the paired AUC difference per subgroup (dataset, split, then `paired_by_subgroup`'s keys)."""

    rows: list[tuple[str, ...]]
    notes: list[str]
    changed: pd.DataFrame
    subgroups: list[dict]


def _subgroup_values(side: Revision, name: str, split: str) -> pd.DataFrame | None:
    """The subgroup values of `split`'s images on one side, indexed by id; None without any."""
    table = side.subgroups(name)
    if table is None or len(table.columns) <= 2:
        return None
    rows = table[table["split"] == split]
    return rows.drop(columns=["split"]).set_index("id")


def pair_sides(old: Revision, new: Revision, *, n_resamples: int = 2000, seed: int = 0) -> Pairing:
    """`new` against `old` on the images both predicted, dataset by dataset and split by split;
    subgroups are those `new` recorded."""
    rows, notes, changed, by_subgroup = [], [], [], []
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
            options = dict(n_resamples=n_resamples, seed=seed)
            result = compare_predictions(
                paired["label_new"],
                (paired["probability_new"], new_threshold),
                (paired["probability_old"], old_threshold),
                **options,
            )
            rows.append(table_row(name, split, result))
            flipped = changed_decisions(paired, new_threshold, old_threshold)
            changed.append(
                flipped.assign(
                    dataset=name, split=split, threshold_old=old_threshold, threshold_new=new_threshold
                )
            )
            values = _subgroup_values(new, name, split)
            if values is not None:
                limit = new.subgroup_limit(name)
                by_subgroup += [
                    {"dataset": name, "split": split, **entry}
                    for entry in paired_by_subgroup(paired, values, limit=limit, **options)
                ]
    columns = ["dataset", "split", *CHANGED_COLUMNS, "threshold_old", "threshold_new"]
    flips = pd.concat(changed, ignore_index=True)[columns] if changed else pd.DataFrame(columns=columns)
    return Pairing(rows, notes, flips, by_subgroup)


def _decision(label: object) -> str:
    return "positive" if int(label) == 1 else "negative"


def changed_rows(changed: pd.DataFrame) -> list[tuple[str, ...]]:
    """Table rows of changed decisions: dataset, split, image, label, and probability, threshold
    and decision as old → new (a probability can rise and its decision still turn negative when
    the threshold rises more)."""
    return [
        (
            row.dataset,
            row.split,
            f"`{row.id}`",
            _decision(row.label),
            _before_now(row.probability_old, row.probability_new, digits=4),
            _before_now(row.threshold_old, row.threshold_new, digits=4),
            f"{_decision(row.decision_old)} → {_decision(row.decision_new)}",
        )
        for row in changed.itertuples()
    ]


CHANGED_HEADER = ("dataset", "split", "image", "label", "probability", "threshold", "decision")
SUBGROUP_HEADER = ("dataset", "split", "subgroup", "images", "AUC", "ΔAUC [95 % CI]", "verdict")


def subgroup_rows(entries: list[dict]) -> list[tuple[str, ...]]:
    """Table rows of the paired comparison per subgroup; a group too small says so."""
    rows = []
    for entry in entries:
        group = f"{entry['subgroup']} = {entry['value']}"
        if "scored_with" in entry:
            group += f" (with {entry['scored_with']})"
        where = (entry["dataset"], entry["split"], group)
        if "too_small" in entry:
            rows.append((*where, str(entry["n"]), "—", "—", f"not compared: {entry['too_small']}"))
            continue
        words = auc_verdict(
            entry["auc_difference_ci95"],
            better="evidence of an improvement",
            worse="evidence of a decline",
            same="no evidence of a change",
        )
        rows.append(
            (
                *where,
                str(entry["n"]),
                _before_now(entry["auc_old"], entry["auc_new"]),
                difference_text(entry["auc_difference"], entry["auc_difference_ci95"]),
                words,
            )
        )
    return rows


def paired_markdown(pairing: Pairing, old: Revision, new: Revision, n_resamples: int) -> list[str]:
    """The table of the paired comparison, with its notes."""
    lines = [
        f"AUC, sensitivity and specificity as {old.label} → {new.label}, each at its own "
        f"threshold; ΔAUC = {new.label} − {old.label} with its paired bootstrap 95 % interval "
        f"({n_resamples} resamples of the same images); McNemar's test on the decisions.",
        "",
    ]
    lines += markdown_table(HEADER, pairing.rows) if pairing.rows else ["No predictions to compare."]
    if pairing.notes:
        lines += [""] + [f"- {note}" for note in pairing.notes]
    return lines


def subgroup_markdown(pairing: Pairing) -> list[str]:
    if not pairing.subgroups:
        return []
    return [
        "",
        "Per subgroup (the groups of the newer side, paired on the same images):",
        "",
        *markdown_table(SUBGROUP_HEADER, subgroup_rows(pairing.subgroups)),
    ]


def paired_comparison(
    old: Revision, new: Revision, *, n_resamples: int = 2000, seed: int = 0
) -> str:
    """The Markdown of `medcls compare`: `new` against `old` on the images both predicted, per
    subgroup, and every image whose decision changed."""
    pairing = pair_sides(old, new, n_resamples=n_resamples, seed=seed)
    lines = paired_markdown(pairing, old, new, n_resamples) + subgroup_markdown(pairing)
    lines += ["", f"Decisions that changed ({len(pairing.changed)} images):"]
    if len(pairing.changed):
        lines += ["", *markdown_table(CHANGED_HEADER, changed_rows(pairing.changed))]
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
        plots.roc_panels_figure(panels).savefig(out_png, dpi=120, bbox_inches="tight")
    return bool(panels)


def copy_thumbnail(side: Revision, name: str, image_id: str, out_dir: Path) -> str | None:
    """Copy the Grad-CAM thumbnail `side` has of an image (written by its evaluate stage) into
    `out_dir`/cases/<name>/; return its path relative to `out_dir`, or None when it has none."""
    path = DatasetPaths(name).cases / thumbnail_name(image_id)
    if not side.has_file(path):
        return None
    relative = Path("cases") / name / path.name
    (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / relative).write_bytes(side.read_bytes(path))
    return relative.as_posix()


def _image_cell(relative: str | None) -> str:
    return f"![Grad-CAM]({relative})" if relative else "—"


def changed_cases_markdown(changed: pd.DataFrame, head: Revision, out_dir: Path) -> list[str]:
    """The `TOP_CHANGED` largest changes of decision, with the Grad-CAM thumbnail `head` has of
    each (its evaluate stage draws the test split's borderline images and confident errors)."""
    if changed.empty:
        return ["No decision changed."]
    top = changed.head(TOP_CHANGED)
    rows = [
        (*row, _image_cell(copy_thumbnail(head, case.dataset, case.id, out_dir)))
        for row, case in zip(changed_rows(top), top.itertuples(), strict=True)
    ]
    lines = markdown_table((*CHANGED_HEADER, f"Grad-CAM at {head.label}"), rows)
    if len(changed) > TOP_CHANGED:
        lines += ["", f"{len(changed) - TOP_CHANGED} more: `medcls compare` lists them all."]
    return lines


def confident_errors_markdown(head: Revision, names: list[str], out_dir: Path) -> list[str]:
    """The most confident errors on test that `head`'s model cards list, with thumbnails."""
    rows = []
    for name in names:
        card = head.model_card(name) or {}
        errors = card.get("evaluation", {}).get("cases", {}).get("confident_errors", [])
        rows += [
            (
                name,
                f"`{error['id']}`",
                _decision(error["label"]),
                f"{error['probability']:.3f}",
                _image_cell(copy_thumbnail(head, name, error["id"], out_dir)),
            )
            for error in errors
        ]
    if not rows:
        return [f"No model card at {head.label} lists confident errors."]
    return markdown_table(("dataset", "image", "label", "probability", "Grad-CAM"), rows)


def write_review(
    base: Revision, head: Revision, out_dir: Path, *, n_resamples: int = 2000, seed: int = 0
) -> Path:
    """`out_dir`/review.md (and the images it shows): a pull-request comment on `head` against
    `base`. Returns the Markdown file."""
    names = compared_datasets(base, head)
    pairing = pair_sides(base, head, n_resamples=n_resamples, seed=seed)
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
    lines += ["", "### Predictions paired on the same images", ""]
    lines += paired_markdown(pairing, base, head, n_resamples) + subgroup_markdown(pairing)
    lines += ["", "### Decisions that changed", ""]
    lines += changed_cases_markdown(pairing.changed, head, out_dir)
    lines += ["", f"### Most confident errors at {head.label}", ""]
    lines += confident_errors_markdown(head, names, out_dir)
    lines += ["", "### ROC on test", ""]
    lines.append(
        f"![ROC curves on test, {base.label} and {head.label}]({ROC_IMAGE})"
        if with_roc
        else "No test split with both classes on both sides: no ROC curves."
    )
    out_md = out_dir / "review.md"
    out_md.write_text("\n".join(lines) + "\n")
    return out_md
