"""The model card quotes the metrics and data files as written, derives its limitations from the
numbers, and maps every CLAIM 2024 item to a section or to the authors."""

import json
from pathlib import Path

import pandas as pd
import pytest

from medcls.evaluation import card
from medcls.params import Params, load

PROJECT = Path(__file__).resolve().parents[3]
HEADLINE = {
    "val": {"n": 40, "auc": 0.9, "auc_low": 0.8, "auc_high": 0.97},
    "test": {
        "n": 60, "auc": 0.91, "auc_low": 0.84, "auc_high": 0.96,
        "sensitivity": 0.8, "sensitivity_low": 0.7, "sensitivity_high": 0.9,
        "specificity": 0.85, "specificity_low": 0.75, "specificity_high": 0.93,
        "threshold": 0.42, "ece": 0.08, "brier": 0.11,
        "vs_baseline": 0.01, "vs_baseline_low": -0.03, "vs_baseline_high": 0.05,
    },
    "external": {"other": {"n": 80, "auc": 0.8, "auc_low": 0.7, "auc_high": 0.88}},
}  # fmt: skip
SUBGROUPS = {
    "test": {
        "size": {
            "<300 px": {"n": 8, "positives": 4, "negatives": 4, "scored": False,
                        "too_small": "fewer than 20 images"},
            "≥300 px": {"n": 52, "positives": 20, "negatives": 32, "scored": True,
                        "auc": 0.83, "auc_ci95": [0.7, 0.93],
                        "sensitivity": 0.8, "sensitivity_ci95": [0.6, 0.95],
                        "specificity": 0.75, "specificity_ci95": [0.6, 0.88]},
        }
    }
}  # fmt: skip


@pytest.fixture(scope="module")
def params() -> Params:
    return load(PROJECT / "params.yaml")


@pytest.fixture
def inputs() -> card.CardInputs:
    split = pd.DataFrame(
        {
            "path": [f"i{index}.png" for index in range(6)],
            "split": ["train", "train", "val", "test", "test", "test"],
            "class_name": ["Benign", "Malignant"] * 3,
            "group": ["p1", "p1", "p2", "p3", "p4", "p4"],
        }
    )
    rejected = pd.DataFrame(
        {"path": ["a", "b", "c"], "reason": ["empty mask", "empty mask", "undecodable image"]}
    )
    return card.CardInputs(
        sources={"bus_uc": {"source": "kaggle:x", "fingerprint": "abc"}},
        split=split,
        rejected=rejected,
        training={
            "train_images": 2,
            "precision_policy": "float32",
            "replicas": 1,
            "phases": {"frozen": {"epochs_run": 3}, "fine_tune": {"epochs_run": 2}},
            "seconds": 12.5,
        },
        provenance={"git_commit": "0" * 40, "dvc_lock": {"train@bus_uc": {"models/x": "md5"}}},
        software={"python": "3.12", "tensorflow": "2.20.0"},
    )


def make_card(params, inputs, headline=HEADLINE, details=None) -> dict:
    details = {"subgroups": SUBGROUPS} if details is None else details
    dataset = params.trained_dataset("bus_uc")
    return card.model_card("bus_uc", params, dataset, headline, details, inputs)


def test_card_fields_equal_the_metrics_they_quote(params, inputs):
    written = json.loads(json.dumps(make_card(params, inputs)))
    evaluation = written["evaluation"]
    assert evaluation["headline"] == HEADLINE
    assert evaluation["subgroups"] == SUBGROUPS
    assert written["data"]["sources"] == inputs.sources
    assert written["provenance"] == inputs.provenance


def test_data_counts_and_rejects_by_reason(params, inputs):
    data = make_card(params, inputs)["data"]
    assert data["rejected_by_reason"] == {"empty mask": 2, "undecodable image": 1}
    assert data["splits"]["test"] == {
        "images": 3, "groups": 2, "per_class": {"Benign": 1, "Malignant": 2},
    }  # fmt: skip
    assert data["images"] == 6 and data["rejected"] == 3


def test_training_facts_from_the_train_stage(params, inputs):
    training = make_card(params, inputs)["training"]
    assert training["epochs_run"] == 5
    assert training["phases"] == inputs.training["phases"]
    assert training["seed"] == params.seed and training["deterministic"] is True


def test_limitations_follow_from_the_numbers(params, inputs):
    found = make_card(params, inputs)["limitations"]
    assert any("fewer than 100" in line for line in found)  # 60 test images
    assert any("size = <300 px (test): 8 images, too few to score" in line for line in found)
    assert any("size = ≥300 px (test): AUC 0.830, 0.080 below the test AUC 0.910" in line
               for line in found)  # fmt: skip
    assert any("external test set other, AUC falls to 0.800" in line for line in found)
    assert any("ECE) 0.080" in line for line in found)
    assert any("no evidence that the model beats" in line for line in found)


def test_no_limitation_without_the_numbers_for_one(params, inputs):
    good = {"test": {"n": 500, "auc": 0.95, "ece": 0.01}}
    assert make_card(params, inputs, headline=good, details={})["limitations"] == []


def test_every_claim_item_is_answered_or_left_to_the_authors(params, inputs):
    claim = make_card(params, inputs)["claim_2024"]
    answered = {item for items in claim["answered"].values() for item in items}
    authors = {int(item) for item in claim["authors_only"]}
    assert answered | authors == set(range(1, 45)) and not answered & authors


def test_the_params_hash_changes_with_a_model_param_only(params):
    dataset = params.trained_dataset("bus_uc")
    same = card.params_sha256(params, dataset)
    other_threshold = dataset.model_copy(
        update={"evaluate": dataset.evaluate.model_copy(update={"bootstrap": 40})}
    )
    assert card.params_sha256(params, other_threshold) == same
    smaller = dataset.model_copy(update={"image_size": 128})
    assert card.params_sha256(params, smaller) != same


def test_markdown_has_every_section_and_the_authors_items(params, inputs):
    text = card.card_markdown(make_card(params, inputs))
    for title in card.SECTION_TITLES.values():
        assert f"\n## {title}\n" in text
    assert "- 14: definition of the reference standard" in text
    assert "- test.auc: 0.91\n" in text and "CLAIM 2024 items 3, 41." in text
    assert "| test | size = ≥300 px | 52 | 0.830 (0.700–0.930) |" in text
    assert text.startswith("# Model card: bus_uc\n")


def test_lock_hashes_of_the_model_stages():
    lock = {
        "stages": {
            "train@bus_uc": {"outs": [{"path": "models/bus_uc/model.keras", "md5": "m1"}]},
            "split@bus_uc": {"outs": [{"path": "data/split/bus_uc.csv", "md5": "s1"}]},
            "train@other": {"outs": [{"path": "models/other/model.keras", "md5": "x"}]},
        }
    }
    assert card.lock_hashes(lock, "bus_uc") == {
        "split@bus_uc": {"data/split/bus_uc.csv": "s1"},
        "train@bus_uc": {"models/bus_uc/model.keras": "m1"},
    }
