"""Subgroup values from manifest columns, file names and image sizes; scores per group, too-small
groups, missing values and the errors of definitions that cannot apply."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.evaluation import metrics, subgroups
from medcls.params import Params, ParamsError, SubgroupMinSize, validate
from medcls.pipeline.paths import DatasetPaths

PROJECT = Path(__file__).resolve().parents[3]

KEY = "datasets.x.evaluate.subgroups"
LIMIT = SubgroupMinSize(images=20, per_class=5)


def evaluate_params(base_params: dict, **evaluate) -> dict:
    """`base_params` with dataset bus_uc's evaluate section extended by `evaluate`."""
    dataset = base_params["datasets"]["bus_uc"]
    dataset["evaluate"] = {**dataset["evaluate"], **evaluate}
    return base_params


@pytest.fixture
def base_params() -> dict:
    return YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())


def subgroup_list(params: dict) -> list:
    return list(validate(params).datasets["bus_uc"].evaluate.subgroups)


def images(paths, **columns) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, **columns})


def test_column_values_with_missing_ones_in_their_own_group():
    table = images(["a.png", "b.png", "c.png", "d.png"], Doppler=["Yes", "", "No", None])
    values = subgroups.subgroup_values(table, ["Doppler"], KEY, "the manifest")
    assert values["Doppler"].tolist() == ["Yes", "unknown", "No", "unknown"]
    assert values.index.tolist() == ["a.png", "b.png", "c.png", "d.png"]


def test_pattern_values_from_file_names(base_params):
    definitions = subgroup_list(
        evaluate_params(base_params, subgroups=[{"name": "kind", "pattern": "(bacteria|virus)"}])
    )
    table = images(
        [
            "train/PNEUMONIA/person1_bacteria_1.jpeg",
            "test/PNEUMONIA/person3_virus_9.jpeg",
            "test/NORMAL/IM-0001-0001.jpeg",
        ]
    )
    values = subgroups.subgroup_values(table, definitions, KEY, "the split")
    assert values["kind"].tolist() == ["bacteria", "virus", "unknown"]


def test_size_buckets_of_the_longer_side(base_params):
    definitions = subgroup_list(
        evaluate_params(base_params, subgroups=[{"name": "size", "longer_side": [200, 300]}])
    )
    table = images(
        ["a", "b", "c", "d", "e"],
        width=[100, 250, 299, 320, None],
        height=[150, 100, 10, 200, 90],
    )
    values = subgroups.subgroup_values(table, definitions, KEY, "the split")
    assert values["size"].tolist() == ["<200 px", "200–299 px", "200–299 px", "≥300 px", "unknown"]


def test_size_buckets_of_the_shorter_side(base_params):
    definitions = subgroup_list(
        evaluate_params(base_params, subgroups=[{"name": "size", "shorter_side": [240]}])
    )
    table = images(["a", "b"], width=[320, 320], height=[238, 269])
    values = subgroups.subgroup_values(table, definitions, KEY, "the split")
    assert values["size"].tolist() == ["<240 px", "≥240 px"]


def test_unknown_column_names_the_key_and_the_columns():
    table = images(["a.png"], source=["s"])
    with pytest.raises(subgroups.SubgroupError) as error:
        subgroups.subgroup_values(table, ["source", "Doppler"], KEY, "data/split/x.csv")
    message = str(error.value)
    assert message.startswith(f"{KEY}[1]: no column 'Doppler' in data/split/x.csv")
    assert "'source'" in message and "keep_columns" in message


def test_pattern_matching_no_file_name_is_an_error(base_params):
    definitions = subgroup_list(
        evaluate_params(base_params, subgroups=[{"name": "kind", "pattern": "virus"}])
    )
    with pytest.raises(
        subgroups.SubgroupError, match=r"\[0\]: pattern 'virus' matches none of the 2"
    ):
        subgroups.subgroup_values(images(["a.png", "b.png"]), definitions, KEY, "the split")


@pytest.mark.parametrize(
    ("evaluate", "expected"),
    [
        (
            {"subgroups": ["source", "source"]},
            "datasets.bus_uc.evaluate.subgroups[1]: 'source' repeats",
        ),
        ({"subgroups": [{"name": "k", "pattern": "("}]}, "not a regular expression"),
        ({"subgroups": [{"name": "s", "longer_side": [300, 200]}]}, "expected increasing"),
        ({"subgroups": [{"name": "s"}]}, "expected a manifest column name"),
        (
            {"subgroups": [{"name": "s", "longer_side": [1], "shorter_side": [1]}]},
            "give longer_side or shorter_side",
        ),
        ({"external_subgroups": {"other": ["Doppler"]}}, "not an external test set"),
    ],
)
def test_bad_definitions_are_one_line_each(base_params, evaluate, expected):
    with pytest.raises(ParamsError) as error:
        validate(evaluate_params(base_params, **evaluate))
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def scored_rows(n_per_class: int, seed: int = 0, prefix: str = "") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    probabilities = np.clip(0.3 * labels + rng.uniform(0, 0.7, labels.size), 0, 1)
    ids = [f"{prefix}{index}.png" for index in range(labels.size)]
    return pd.DataFrame(
        {
            "id": ids,
            "group": [f"p{index // 2}" for index in range(labels.size)],
            "label": labels,
            "probability": probabilities,
        }
    )


def test_each_group_scored_at_the_threshold_and_a_small_one_not():
    large, small = scored_rows(15, prefix="l"), scored_rows(3, seed=1, prefix="s")
    rows = pd.concat([large, small], ignore_index=True)
    values = pd.DataFrame(
        {"site": ["A"] * len(large) + ["B"] * len(small)}, index=pd.Index(rows["id"], name="id")
    )
    document = subgroups.score_subgroups(rows, values, 0.5, limit=LIMIT, n_bootstrap=200, seed=0)
    scored, too_small = document["site"]["A"], document["site"]["B"]
    expected = metrics.binary_metrics(large["label"], large["probability"], 0.5)
    for rate in ("auc", "sensitivity", "specificity"):
        assert scored[rate] == expected[rate]
        low, high = scored[f"{rate}_ci95"]
        assert low <= scored[rate] <= high
    assert (scored["n"], scored["positives"], scored["negatives"]) == (30, 15, 15)
    assert too_small == {
        "n": 6,
        "positives": 3,
        "negatives": 3,
        "scored": False,
        "too_small": "fewer than 20 images",
    }


def test_a_group_of_one_class_is_scored_with_the_other_class_and_unknown_comes_last():
    """Like bacterial pneumonia (positives only): its AUC is against every negative image."""
    rows = scored_rows(12)
    kind = np.where(rows["label"] == 1, "bacteria", "")  # no pattern match on the normal images
    kind[rows.index[rows["label"] == 1][:4]] = "virus"
    values = subgroups.subgroup_values(images(rows["id"], kind=kind), ["kind"], KEY, "the split")
    limit = SubgroupMinSize(images=5, per_class=5)
    document = subgroups.score_subgroups(rows, values, 0.5, limit=limit, n_bootstrap=0, seed=0)
    assert list(document["kind"]) == ["bacteria", "virus", "unknown"]
    bacteria = document["kind"]["bacteria"]
    assert (bacteria["n"], bacteria["positives"], bacteria["negatives"]) == (8, 8, 12)
    assert bacteria["scored_with"] == "every negative image"
    scored = rows[(kind == "bacteria") | (rows["label"] == 0)]
    assert bacteria["auc"] == metrics.roc_auc(scored["label"], scored["probability"])
    assert document["kind"]["virus"]["too_small"] == "fewer than 5 images"
    assert document["kind"]["unknown"]["scored_with"] == "every positive image"


def test_intervals_resample_whole_patients():
    """Duplicating every image of a patient narrows an image bootstrap, not a patient one."""
    rows = scored_rows(20)
    twice = pd.concat([rows, rows.assign(id=rows["id"] + "#2")], ignore_index=True)

    def scores(table: pd.DataFrame) -> dict:
        values = pd.DataFrame({"site": "A"}, index=pd.Index(table["id"], name="id"))
        document = subgroups.score_subgroups(
            table, values, 0.5, limit=LIMIT, n_bootstrap=400, seed=3
        )
        return {key: value for key, value in document["site"]["A"].items() if key.endswith("_ci95")}

    assert scores(rows) == scores(twice)
    assert len(scores(rows)) == 3


def test_no_resamples_give_no_intervals():
    rows = scored_rows(10)
    values = pd.DataFrame({"site": "A"}, index=pd.Index(rows["id"], name="id"))
    group = subgroups.score_subgroups(rows, values, 0.5, limit=LIMIT, n_bootstrap=0, seed=0)
    assert [group["site"]["A"][f"{rate}_ci95"] for rate in subgroups.SCORED_RATES] == [
        [None, None]
    ] * 3


def test_predictions_of_images_without_values_are_an_error():
    rows = scored_rows(10)
    values = pd.DataFrame({"site": ["A"]}, index=pd.Index(["other.png"], name="id"))
    with pytest.raises(subgroups.SubgroupError, match="different runs"):
        subgroups.score_subgroups(rows, values, 0.5, limit=LIMIT, n_bootstrap=0, seed=0)


@pytest.fixture
def workspace(tmp_path, monkeypatch, base_params) -> tuple[Params, pd.DataFrame]:
    """bus_uc's test split and an external set `other` with a Doppler column (missing for some
    images), both on disk where the evaluate stage reads them, and their predictions."""
    base_params["datasets"]["other"] = {
        "test_only": True,
        **{
            key: base_params["datasets"]["chest_xray"][key]
            for key in ("source", "layout", "classes")
        },
    }
    evaluate_params(
        base_params,
        external=["other"],
        subgroups=["source"],
        external_subgroups={"other": ["Doppler"]},
        subgroup_min_size={"images": 10, "per_class": 3},
        bootstrap=0,
    )
    monkeypatch.chdir(tmp_path)
    own, other = scored_rows(10, prefix="own/"), scored_rows(10, seed=2, prefix="other/")
    paths = DatasetPaths("bus_uc")
    paths.split.parent.mkdir(parents=True)
    split = own.rename(columns={"id": "path"}).assign(split="test", source="bus_uc")
    pd.concat([split, split.assign(path="train/" + split["path"], split="train")]).to_csv(
        paths.split, index=False
    )
    paths.external.mkdir(parents=True)
    doppler = np.where(np.arange(len(other)) % 2, "Yes", "No").astype(object)
    doppler[:4] = ""
    other.rename(columns={"id": "path"}).assign(Doppler=doppler).to_csv(
        paths.external_images("other"), index=False
    )
    predictions = pd.concat(
        [own.assign(split="test"), other.assign(split="external:other")], ignore_index=True
    )
    return validate(base_params), predictions


def test_the_values_of_the_test_split_and_the_external_set(workspace):
    params, _ = workspace
    dataset, paths = params.trained_dataset("bus_uc"), DatasetPaths("bus_uc")
    by_split = subgroups.values_by_split("bus_uc", dataset, paths)
    assert list(by_split) == ["test", "external:other"]
    assert set(by_split["test"]["source"]) == {"bus_uc"} and len(by_split["test"]) == 20
    assert by_split["external:other"]["Doppler"].value_counts().to_dict() == {
        "Yes": 8, "No": 8, "unknown": 4,
    }  # fmt: skip
    table = subgroups.values_table(by_split)
    assert list(table.columns) == ["split", "id", "source", "Doppler"]
    assert len(table) == 40 and set(table["split"]) == {"test", "external:other"}


def test_an_unknown_external_column_names_its_key_and_table(workspace, base_params):
    params, predictions = workspace
    dataset = params.trained_dataset("bus_uc")
    wrong = dataset.model_copy(
        update={
            "evaluate": dataset.evaluate.model_copy(
                update={"external_subgroups": {"other": ["Marks"]}}
            )
        }
    )
    with pytest.raises(subgroups.SubgroupError) as error:
        subgroups.values_by_split("bus_uc", wrong, DatasetPaths("bus_uc"))
    assert str(error.value).startswith(
        "datasets.bus_uc.evaluate.external_subgroups.other[0]: no column 'Marks' in "
        "data/external/bus_uc/other.csv"
    )


def test_the_report_table_lists_scored_and_small_groups():
    rows = pd.concat([scored_rows(15, prefix="l"), scored_rows(3, seed=1, prefix="s")])
    values = pd.DataFrame({"site": ["A"] * 30 + ["B"] * 6}, index=pd.Index(rows["id"], name="id"))
    document = {
        "test": subgroups.score_subgroups(
            rows.reset_index(drop=True), values, 0.5, limit=LIMIT, n_bootstrap=100, seed=0
        )
    }
    lines = subgroups.markdown(document)
    scored = document["test"]["site"]["A"]
    assert lines[2].startswith(f"| test | site = A | 30 | {scored['auc']:.3f} (")
    assert lines[3] == "| test | site = B | 6 | — | — | — | too small: fewer than 20 images |"
