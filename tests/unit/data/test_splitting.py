"""Grouped stratified split: no patient or identical image in two splits, proportions per class."""


from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.data.manifest import build_manifest
from medcls.data.splitting import cross_validation_folds, grouped_stratified_split, split_counts
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT
from medcls.params import validate
from medcls.pipeline.paths import DatasetPaths
from stages import split as split_stage
from tests.support.splitting import FRACTIONS, synthetic_manifest


@pytest.fixture(scope="module")
def kermany(tmp_path_factory) -> pd.DataFrame:
    raw = synthetic.make_kermany(
        tmp_path_factory.mktemp("kermany"), n_patients_per_class=10, images_per_patient=3
    )
    return build_manifest(raw, "kermany", synthetic.KERMANY_CLASSES, workers=1)[0]


def splits_sharing(manifest: pd.DataFrame, split: pd.Series, column: str) -> pd.Series:
    """Values of `column` found in more than one split."""
    per_value = split.groupby(manifest[column]).nunique()
    return per_value[per_value > 1]


@pytest.mark.parametrize("column", ["group", "sha256"])
def test_no_group_or_content_in_two_splits(kermany: pd.DataFrame, column: str) -> None:
    split = grouped_stratified_split(kermany, FRACTIONS, seed=0)
    assert splits_sharing(kermany, split, column).empty
    synthetic = synthetic_manifest()
    assert not synthetic[column].is_unique
    assert splits_sharing(
        synthetic, grouped_stratified_split(synthetic, FRACTIONS, seed=0), column
    ).empty


def test_duplicate_across_patients_links_both_patients(kermany: pd.DataFrame) -> None:
    original, copy = synthetic.KERMANY_DUPLICATE
    by_path = kermany.set_index("path")
    assert by_path.loc[original, "sha256"] == by_path.loc[copy, "sha256"]
    patients = by_path.loc[[original, copy], "group"].tolist()
    assert patients[0] != patients[1]
    split = grouped_stratified_split(kermany, FRACTIONS, seed=0)
    assert split[kermany["group"].isin(patients)].nunique() == 1


def test_every_split_gets_every_class(kermany: pd.DataFrame) -> None:
    split = grouped_stratified_split(kermany, FRACTIONS, seed=3)
    assert (pd.crosstab(split, kermany["class_name"]) > 0).all().all()


def test_proportions_follow_fractions_per_class() -> None:
    manifest = synthetic_manifest()
    split = grouped_stratified_split(manifest, FRACTIONS, seed=0)
    shares = pd.crosstab(split, manifest["label"], normalize="columns")
    for name, fraction in FRACTIONS.items():
        assert shares.loc[name].to_numpy() == pytest.approx(fraction, abs=0.02)


def test_deterministic_and_independent_of_row_order() -> None:
    manifest = synthetic_manifest()
    split = grouped_stratified_split(manifest, FRACTIONS, seed=7)
    assert split.equals(grouped_stratified_split(manifest, FRACTIONS, seed=7))
    shuffled = manifest.sample(frac=1, random_state=0)
    assert grouped_stratified_split(shuffled, FRACTIONS, seed=7).sort_index().equals(split)
    assert not split.equals(grouped_stratified_split(manifest, FRACTIONS, seed=8))


def test_zero_fraction_split_stays_empty() -> None:
    manifest = synthetic_manifest()
    split = grouped_stratified_split(manifest, {"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert set(split) == {"train", "val"}


def test_too_small_data_fails_clearly() -> None:
    paths = ["a.png", "b.png", "c.png", "d.png"]
    manifest = pd.DataFrame(
        {
            "path": paths,
            "group": paths,
            "sha256": paths,
            "label": [0, 0, 1, 1],
            "class_name": list("nnpp"),
        }
    )
    with pytest.raises(ValueError, match="too few independent groups to split"):
        grouped_stratified_split(manifest, FRACTIONS, seed=0)


def test_split_counts() -> None:
    rows = pd.DataFrame(
        {"split": ["train", "train", "val", "train"], "class_name": ["a", "b", "a", "a"]}
    )
    assert split_counts(rows) == {
        "train": {"a": 2, "b": 1, "total": 3},
        "val": {"a": 1, "b": 0, "total": 1},
    }


# --- cross-validation folds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def folded() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    manifest = synthetic_manifest()
    split = grouped_stratified_split(manifest, FRACTIONS, seed=0)
    return manifest, split, cross_validation_folds(manifest, split, 5, seed=0)


def test_folds_cover_train_and_val_once_and_leave_test_alone(folded) -> None:
    manifest, split, folds = folded
    assert folds.index.equals(manifest.index)
    assert set(folds[split == "test"]) == {-1}
    assert set(folds[split != "test"]) == set(range(5))


@pytest.mark.parametrize("column", ["group", "sha256"])
def test_folds_are_grouped(folded, column: str) -> None:
    manifest, split, folds = folded
    pooled = split != "test"
    assert splits_sharing(manifest[pooled], folds[pooled], column).empty


def test_folds_are_stratified_and_equal(folded) -> None:
    manifest, split, folds = folded
    pooled = split != "test"
    shares = pd.crosstab(folds[pooled], manifest.loc[pooled, "label"], normalize="columns")
    assert shares.to_numpy() == pytest.approx(0.2, abs=0.02)


def split_stage_output(
    workspace: Path, folds: int | None, seed: int = 42, split_seed: int | None = None
) -> pd.DataFrame:
    """data/split/demo.csv as the split stage writes it, with `split.folds` and `split.seed` set or
    left out."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"], params["trained"] = {"demo": params["datasets"]["bus_uc"]}, ["demo"]
    params["split"] = {key: params["split"][key] for key in FRACTIONS}
    params["seed"] = seed
    if folds is not None:
        params["split"].update(folds=folds, fold_ids=list(range(folds)) if folds > 1 else [])
    if split_seed is not None:
        params["split"]["seed"] = split_seed
    paths = DatasetPaths("demo")
    paths.manifest.parent.mkdir(parents=True, exist_ok=True)
    synthetic_manifest().to_csv(paths.manifest, index=False)
    typed = validate(params)
    split_stage.split("demo", typed, typed.dataset("demo"), paths)
    return pd.read_csv(paths.split, keep_default_na=False)


def test_the_split_file_is_unchanged_by_folds_1_and_keeps_its_test_rows_with_folds(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = split_stage_output(tmp_path, None)
    default_text = DatasetPaths("demo").split.read_text()
    assert "fold" not in default.columns
    split_stage_output(tmp_path, 1)
    assert DatasetPaths("demo").split.read_text() == default_text
    folded = split_stage_output(tmp_path, 4)
    assert folded["split"].equals(default["split"])
    assert set(folded.loc[folded["split"] == "test", "fold"]) == {-1}
    assert set(folded.loc[folded["split"] != "test", "fold"]) == {0, 1, 2, 3}


def test_split_seed_keeps_the_splits_when_the_seed_changes(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = split_stage_output(tmp_path, 3)
    assert not split_stage_output(tmp_path, 3, seed=7)[["split", "fold"]].equals(default[["split", "fold"]])
    pinned = split_stage_output(tmp_path, 3, seed=7, split_seed=42)
    assert pinned[["split", "fold"]].equals(default[["split", "fold"]])


def test_split_counts_per_fold() -> None:
    rows = pd.DataFrame(
        {
            "split": ["train", "val", "test", "train"],
            "class_name": ["a", "b", "a", "b"],
            "fold": [0, 1, -1, 1],
        }
    )
    assert split_counts(rows)["folds"] == {
        "fold0": {"a": 1, "b": 0, "total": 1},
        "fold1": {"a": 0, "b": 2, "total": 2},
    }
