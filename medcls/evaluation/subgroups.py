"""Subgroups: is the model as good for every kind of image, or only on average?

A pooled AUC can hide a subgroup the model fails (one scanner, one pneumonia type, small images).
Each subgroup definition (`evaluate.subgroups`, `evaluate.external_subgroups`) gives every scored
image one value: a manifest column (`source`, a csv layout's kept columns), the first match of a
pattern in the file name, or a bucket of a side of the source image. A missing value is its
own `unknown` group, so no image drops out of the table. Each group is scored at the model's
threshold, with intervals that resample whole patients (their images are not independent); a group
below the size limit is reported as too small, not scored.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from medcls.evaluation.metrics import binary_metrics, bootstrap_ci, checked_arrays, roc_auc
from medcls.evaluation.paired import paired_auc_difference
from medcls.evaluation.splits import external_split
from medcls.params import (
    DatasetParams,
    PatternSubgroup,
    SizeSubgroup,
    Subgroup,
    SubgroupMinSize,
    subgroup_name,
)
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import DatasetPaths

UNKNOWN = "unknown"  # the group of the images without a value
SCORED_RATES = ("auc", "sensitivity", "specificity")


class SubgroupError(PipelineError, ValueError):
    """A subgroup definition that cannot be applied to the scored images."""


# --- every image's value -----------------------------------------------------------------------


def _column_values(images: pd.DataFrame, column: str, key: str, where: str) -> pd.Series:
    if column not in images:
        reserved = ("path", "mask_paths", "sha256", "source_split", "split", "fold")
        usable = [name for name in images.columns if name not in reserved]
        raise SubgroupError(
            f"{key}: no column {column!r} in {where}; its columns are {usable} (a csv layout "
            "copies further table columns into the manifest with `keep_columns`)"
        )
    values = images[column].astype("string").str.strip()
    return values.mask(values.isna() | (values == ""), UNKNOWN).astype(str)


def _pattern_values(
    images: pd.DataFrame, subgroup: PatternSubgroup, key: str, where: str
) -> pd.Series:
    pattern = re.compile(subgroup.pattern)

    def value(path: str) -> str:
        found = pattern.search(posixpath.basename(path))
        if found is None:
            return UNKNOWN
        return found.group(1) if pattern.groups and found.group(1) is not None else found.group(0)

    values = images["path"].astype(str).map(value)
    if not images.empty and (values == UNKNOWN).all():
        raise SubgroupError(
            f"{key}: pattern {subgroup.pattern!r} matches none of the {len(images)} file names "
            f"of {where} (e.g. {posixpath.basename(str(images['path'].iloc[0]))!r}); fix the "
            "pattern or leave the subgroup out"
        )
    return values


def size_bucket(side: float, edges: Sequence[int]) -> str:
    """The bucket of an image side in pixels: `<e0 px`, `e0–e1-1 px`, ..., `≥en px`."""
    if not np.isfinite(side):
        return UNKNOWN
    if side < edges[0]:
        return f"<{edges[0]} px"
    for low, high in zip(edges, edges[1:]):
        if side < high:
            return f"{low}–{high - 1} px"
    return f"≥{edges[-1]} px"


def _size_values(images: pd.DataFrame, subgroup: SizeSubgroup, key: str, where: str) -> pd.Series:
    missing = [column for column in ("width", "height") if column not in images]
    if missing:
        raise SubgroupError(f"{key}: {where} has no column {missing}; re-run the manifest stage")
    sizes = images[["width", "height"]].apply(pd.to_numeric, errors="coerce")
    sides = getattr(sizes, "max" if subgroup.side == "longer" else "min")(axis=1, skipna=False)
    return sides.map(lambda side: size_bucket(side, subgroup.edges))


def subgroup_values(
    images: pd.DataFrame, subgroups: Sequence[Subgroup], key: str, where: str
) -> pd.DataFrame:
    """One column per subgroup (its name), one row per image of `images` (indexed by its `path`):
    the image's value, `unknown` when it has none. `key` is the params key of the definitions and
    `where` the table the images come from, both for the error message."""
    columns = {}
    for index, subgroup in enumerate(subgroups):
        item = f"{key}[{index}]"
        if isinstance(subgroup, PatternSubgroup):
            values = _pattern_values(images, subgroup, item, where)
        elif isinstance(subgroup, SizeSubgroup):
            values = _size_values(images, subgroup, item, where)
        else:
            values = _column_values(images, subgroup, item, where)
        columns[subgroup_name(subgroup)] = values.to_numpy()
    return pd.DataFrame(columns, index=pd.Index(images["path"].astype(str), name="id"))


# --- scores per group --------------------------------------------------------------------------


def too_small(images: int, positives: int, negatives: int, limit: SubgroupMinSize) -> str | None:
    """Why a group of `images` is not scored (on `positives` and `negatives`), or None."""
    if images < limit.images:
        return f"fewer than {limit.images} images"
    if min(positives, negatives) < limit.per_class:
        return f"fewer than {limit.per_class} images of a class"
    return None


def scored_with(labels: np.ndarray, in_group: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The rows a group is scored on, and what was added to it. A group of one class (bacterial
    pneumonia: positives only) has no AUC of its own; it is scored with every image of the other
    class, so its AUC says how well the model tells this group from them."""
    present = np.unique(labels[in_group])
    if present.size != 1 or not (labels != present[0]).any():
        return in_group, None
    other = labels != present[0]
    return in_group | other, f"every {'negative' if present[0] == 1 else 'positive'} image"


def score_group(
    rows: pd.DataFrame,
    in_group: np.ndarray,
    threshold: float,
    *,
    limit: SubgroupMinSize,
    n_bootstrap: int,
    seed: int,
) -> dict:
    """n of one group (the `in_group` rows of `rows`: id, group, label, probability) and the
    classes it is scored on; when it is large enough, its AUC, sensitivity and specificity at
    `threshold` with their intervals."""
    scored, added = scored_with(rows["label"].to_numpy(), in_group)
    rows = rows[scored]
    y_true, y_prob = checked_arrays(rows["label"].to_numpy(), rows["probability"].to_numpy())
    positives = int(y_true.sum())
    counts = {
        "n": int(in_group.sum()),
        "positives": positives,
        "negatives": y_true.size - positives,
    }
    if added:
        counts["scored_with"] = added
    reason = too_small(counts["n"], positives, counts["negatives"], limit)
    if reason:
        return {**counts, "scored": False, "too_small": reason}
    point = binary_metrics(y_true, y_prob, threshold)
    intervals = bootstrap_ci(
        y_true,
        y_prob,
        threshold,
        n_resamples=n_bootstrap,
        seed=seed,
        groups=rows["group"].to_numpy(),
    )
    return {
        **counts,
        "scored": True,
        **{key: point[key] for key in ("tp", "fp", "tn", "fn")},
        **{
            key: value
            for rate in SCORED_RATES
            for key, value in ((rate, point[rate]), (f"{rate}_ci95", intervals[f"{rate}_ci95"]))
        },
    }


def _ordered(values: pd.Series) -> list[str]:
    """Values sorted, `unknown` last."""
    return sorted(set(values), key=lambda value: (value == UNKNOWN, value))


def score_subgroups(
    rows: pd.DataFrame,
    values: pd.DataFrame,
    threshold: float,
    *,
    limit: SubgroupMinSize,
    n_bootstrap: int,
    seed: int,
) -> dict:
    """`{subgroup: {value: scores}}` of the scored `rows` (id, group, label, probability), each
    image in the group `values` (from `subgroup_values`) gives it."""
    joined = values.reindex(rows["id"].astype(str))
    unmatched = joined.index[joined.isna().all(axis=1)] if len(values.columns) else []
    if len(unmatched):
        raise SubgroupError(
            f"no subgroup values for {len(unmatched)} scored images (e.g. {unmatched[0]!r}): the "
            "predictions and the image table come from different runs; run `dvc repro`"
        )
    document: dict = {}
    for name in values.columns:
        by_value = pd.Series(joined[name].to_numpy(), index=rows.index)
        document[name] = {
            value: score_group(
                rows,
                (by_value == value).to_numpy(),
                threshold,
                limit=limit,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
            for value in _ordered(by_value)
        }
    return document


# --- two revisions per group -------------------------------------------------------------------


def paired_by_subgroup(
    paired: pd.DataFrame,
    values: pd.DataFrame,
    *,
    limit: SubgroupMinSize,
    n_resamples: int,
    seed: int,
) -> list[dict]:
    """The paired AUC difference of two sides in every group: `paired` holds the images both
    sides predicted (id, label_new, probability_new, probability_old), `values` each image's
    groups (indexed by id; an image it lacks, or an empty value, is `unknown`). Groups below `limit` are listed as too
    small, not compared."""
    joined = values.reindex(paired["id"].astype(str)).fillna(UNKNOWN).replace("", UNKNOWN)
    results = []
    for name in values.columns:
        by_value = pd.Series(joined[name].to_numpy(), index=paired.index)
        for value in _ordered(by_value):
            in_group = (by_value == value).to_numpy()
            scored, added = scored_with(paired["label_new"].to_numpy(), in_group)
            rows = paired[scored]
            positives = int(rows["label_new"].sum())
            entry = {"subgroup": name, "value": value, "n": int(in_group.sum())}
            if added:
                entry["scored_with"] = added
            reason = too_small(entry["n"], positives, len(rows) - positives, limit)
            if reason:
                results.append({**entry, "too_small": reason})
                continue
            results.append(
                {
                    **entry,
                    "auc_old": roc_auc(rows["label_new"], rows["probability_old"]),
                    "auc_new": roc_auc(rows["label_new"], rows["probability_new"]),
                    **paired_auc_difference(
                        rows["label_new"],
                        rows["probability_new"],
                        rows["probability_old"],
                        n_resamples=n_resamples,
                        seed=seed,
                    ),
                }
            )
    return results


# --- the evaluate stage's subgroups --------------------------------------------------------------


def scored_sets(name: str, dataset: DatasetParams, paths: DatasetPaths) -> list[tuple]:
    """(split of the predictions, its images table, subgroup definitions, params key, table
    path) of every scored set with subgroups: the test split, then each external test set."""
    settings, sets = dataset.evaluate, []
    if settings.subgroups:
        split = pd.read_csv(paths.split, keep_default_na=False)
        test = split[split["split"] == "test"].reset_index(drop=True)
        sets.append(
            ("test", test, settings.subgroups, f"datasets.{name}.evaluate.subgroups", paths.split)
        )
    for other, definitions in settings.external_subgroups.items():
        table = paths.external_images(other)
        key = f"datasets.{name}.evaluate.external_subgroups.{other}"
        images = pd.read_csv(table, keep_default_na=False)
        sets.append((external_split(other), images, definitions, key, table))
    return sets


def values_by_split(
    name: str, dataset: DatasetParams, paths: DatasetPaths
) -> dict[str, pd.DataFrame]:
    """`{split: subgroup_values}` of the test split and of each external test set with subgroups
    (read from the split and the external stage's tables)."""
    return {
        split: subgroup_values(images, definitions, key, str(table))
        for split, images, definitions, key, table in scored_sets(name, dataset, paths)
    }


def values_table(by_split: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every scored image's subgroup values (split, id, one column per subgroup name), for
    `data/subgroups/<name>.csv`."""
    frames = [values.reset_index().assign(split=split) for split, values in by_split.items()]
    names = dict.fromkeys(name for values in by_split.values() for name in values.columns)
    columns = ["split", "id", *names]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


# --- the report ------------------------------------------------------------------------------------


def _with_interval(group: Mapping, rate: str) -> str:
    value, (low, high) = group[rate], group[f"{rate}_ci95"]
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if low is None else f" ({low:.3f}–{high:.3f})")


def markdown(document: Mapping) -> list[str]:
    """The subgroups of every scored set as one table, each group with n, AUC, sensitivity and
    specificity (95 % intervals resampling patients), or why it is not scored."""
    header = ("scored set", "subgroup", "images", "AUC", "sensitivity", "specificity", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for split, subgroups in document.items():
        for name, groups in subgroups.items():
            for value, group in groups.items():
                cells = [split, f"{name} = {value}", str(group["n"])]
                if group["scored"]:
                    cells += [_with_interval(group, rate) for rate in SCORED_RATES]
                    cells.append(
                        f"scored with {group['scored_with']}" if "scored_with" in group else ""
                    )
                else:
                    cells += ["—", "—", "—", f"too small: {group['too_small']}"]
                lines.append("| " + " | ".join(cells) + " |")
    return lines
