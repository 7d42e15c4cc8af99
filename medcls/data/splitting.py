"""Split a manifest into train/val/test without leakage between splits.

Images of one patient, and byte-for-byte identical pictures filed under different patients, must
share a split, or the test score measures memorisation. Rows are therefore linked into units
(connected components over shared `group` or `sha256`), and whole units are dealt out so each
class's proportions follow the requested fractions as closely as unit sizes allow, in each source
of a dataset of several (its `source` column). A held-out source goes to the test split whole, with
every unit it shares a patient or picture with: "train on A and B, test on C".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medcls.pipeline.errors import PipelineError


class SplitError(PipelineError, ValueError):
    """The manifest cannot be split as asked; the message says what to change."""


def linked_units(manifest: pd.DataFrame) -> pd.Series:
    """Unit number per row: rows sharing a group or sha256, directly or via other rows, share it."""
    n_rows = len(manifest)
    groups = pd.factorize(manifest["group"].astype(str))[0]
    hashes = pd.factorize(manifest["sha256"])[0]
    # Bipartite graph: row nodes 0..n-1, then one node per group, then one per hash.
    n_groups, n_hashes = groups.max(initial=-1) + 1, hashes.max(initial=-1) + 1
    rows = np.tile(np.arange(n_rows), 2)
    links = np.concatenate([n_rows + groups, n_rows + n_groups + hashes])
    size = n_rows + n_groups + n_hashes
    graph = coo_matrix((np.ones(len(rows)), (rows, links)), shape=(size, size))
    return pd.Series(connected_components(graph, directed=False)[1][:n_rows], index=manifest.index)


def _dealing_order(
    manifest: pd.DataFrame, units: pd.Series, sizes: pd.Series, seed: int
) -> pd.Index:
    """The units of `sizes`, largest first (big units are hardest to place), ties in seeded random
    order.

    Units are first put in a canonical order (by their first path), so the result does not depend
    on the manifest's row order; every unit takes part in the shuffle, those already placed (held
    out) too, so holding a source out leaves the other units' order as it was.
    """
    canonical = manifest["path"].groupby(units).min().sort_values().index
    shuffled = canonical[np.random.default_rng(seed).permutation(len(canonical))]
    shuffled = shuffled[shuffled.isin(sizes.index)]
    return sizes[shuffled].sort_values(ascending=False, kind="stable").index


def _strata(manifest: pd.DataFrame) -> list[pd.Series]:
    """What the split keeps in proportion: the class, and the source where rows name one (a
    manifest without a `source` column is one source)."""
    return [manifest["label"]] + ([manifest["source"]] if "source" in manifest else [])


def grouped_stratified_split(
    manifest: pd.DataFrame,
    fractions: Mapping[str, float],
    seed: int,
    held_out: Collection[str] = (),
) -> pd.Series:
    """Split name per manifest row (aligned to its index): no group or content shared across splits.

    `fractions` ({split name: share}) are non-negative and sum to 1, as the params schema ensures;
    they apply to each class of each source, except the `held_out` sources, which go to `test`.
    """
    names = [name for name, share in fractions.items() if share > 0]
    units = linked_units(manifest)
    chosen = dict.fromkeys(_held_out_units(manifest, units, held_out, names), "test")
    per_unit = pd.crosstab(units, _strata(manifest)).drop(index=list(chosen))
    targets = np.outer([fractions[name] for name in names], per_unit.sum().to_numpy())
    filled = np.zeros_like(targets)
    for unit in _dealing_order(manifest, units, per_unit.sum(axis=1), seed):
        counts = per_unit.loc[unit].to_numpy()
        # The split still missing the most images of this unit's classes takes it.
        best = int(np.argmax((targets - filled) @ counts))
        filled[best] += counts
        chosen[unit] = names[best]
    split = units.map(chosen).rename("split")
    _check_every_split_has_every_class(manifest, units, split, names)
    return split


def _held_out_units(
    manifest: pd.DataFrame, units: pd.Series, held_out: Collection[str], names: list[str]
) -> list[int]:
    """The units with an image of a held-out source (the whole unit: a patient or picture it
    shares with another source must not reach training either)."""
    if not held_out:
        return []
    if "test" not in names:
        raise SplitError(
            f"sources {sorted(held_out)} are held out for a test split, but it is empty"
        )
    return sorted(units[manifest["source"].isin(list(held_out))].unique())


def fold_name(fold: int) -> str:
    return f"fold{fold}"


def cross_validation_folds(
    manifest: pd.DataFrame, split: pd.Series, folds: int, seed: int
) -> pd.Series:
    """Fold number (0 .. folds - 1) of every train and val row, -1 for test rows.

    Train + val are pooled and dealt into `folds` equal shares exactly as the split deals units, so
    folds are grouped (no patient or identical image in two folds) and stratified; the test rows,
    and so the test split, are those of the plain split.
    """
    pooled = split != "test"
    shares = {fold_name(fold): 1 / folds for fold in range(folds)}
    dealt = grouped_stratified_split(manifest[pooled], shares, seed)
    numbers = dealt.str.removeprefix("fold").astype(int)
    return numbers.reindex(manifest.index, fill_value=-1).rename("fold")


def fold_members(split_df: pd.DataFrame, fold: int) -> dict[str, pd.DataFrame]:
    """The rows fold `fold`'s model trains on (every other fold) and validates on (its own)."""
    if "fold" not in split_df:
        raise ValueError("the split has no cross-validation folds; set split.folds > 1 and run `dvc repro`")
    pooled = split_df[split_df["fold"] >= 0]
    return {"train": pooled[pooled["fold"] != fold], "val": pooled[pooled["fold"] == fold]}


def _check_every_split_has_every_class(
    manifest: pd.DataFrame, units: pd.Series, split: pd.Series, names: list[str]
) -> None:
    present = pd.crosstab(split, manifest["class_name"]).reindex(names, fill_value=0).stack()
    missing = [f"{name}/{class_name}" for (name, class_name), n in present.items() if n == 0]
    if missing:
        unit_counts = units.groupby(manifest["class_name"]).nunique().to_dict()
        raise SplitError(
            f"too few independent groups to split: no images for (split/class) {', '.join(missing)}; "
            f"independent units per class: {unit_counts}. "
            "Add data, or use fewer splits or larger fractions."
        )


def split_counts(split_df: pd.DataFrame) -> dict:
    """`{split: {class_name: n, "total": n}}` for the split stage's metrics file, the same per
    fold under `folds` when the rows have cross-validation folds, and per source under `by_source`
    when they come from several."""
    counts = _class_counts(split_df["split"], split_df["class_name"])
    if "source" in split_df and split_df["source"].nunique() > 1:
        counts["by_source"] = {
            str(source): _class_counts(rows["split"], rows["class_name"])
            for source, rows in split_df.groupby("source")
        }
    if "fold" in split_df:
        pooled = split_df[split_df["fold"] >= 0]
        counts["folds"] = _class_counts(pooled["fold"].map(fold_name), pooled["class_name"])
    return counts


def _class_counts(keys: pd.Series, class_names: pd.Series) -> dict:
    table = pd.crosstab(keys, class_names)
    return {
        str(key): {**{str(name): int(n) for name, n in row.items()}, "total": int(row.sum())}
        for key, row in table.iterrows()
    }
