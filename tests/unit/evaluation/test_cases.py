"""Single cases: the decisions two revisions disagree on, the most confident errors and the
borderline images, each listed exactly."""

from pathlib import Path

import pandas as pd

from medcls.evaluation import cases


def test_changed_decisions_are_listed_exactly():
    paired = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "label_new": [1, 0, 1, 0, 1],
            "probability_new": [0.9, 0.7, 0.45, 0.2, 0.55],
            "probability_old": [0.8, 0.3, 0.65, 0.1, 0.45],
        }
    )
    # new decides at 0.5, old at 0.6: a stays positive, b turns positive, c turns negative,
    # d stays negative, e (0.55 new, 0.45 old) turns positive
    changed = cases.changed_decisions(paired, threshold_new=0.5, threshold_old=0.6)
    assert changed.to_dict("records") == [
        {"id": "b", "label": 0, "probability_old": 0.3, "probability_new": 0.7,
         "decision_old": 0, "decision_new": 1},
        {"id": "c", "label": 1, "probability_old": 0.65, "probability_new": 0.45,
         "decision_old": 1, "decision_new": 0},
        {"id": "e", "label": 1, "probability_old": 0.45, "probability_new": 0.55,
         "decision_old": 0, "decision_new": 1},
    ]  # fmt: skip


def test_no_changed_decision_is_an_empty_table():
    paired = pd.DataFrame(
        {"id": ["a"], "label_new": [1], "probability_new": [0.9], "probability_old": [0.8]}
    )
    changed = cases.changed_decisions(paired, 0.5, 0.5)
    assert changed.empty and list(changed.columns) == cases.CHANGED_COLUMNS


def test_confident_errors_most_confident_first():
    rows = pd.DataFrame(
        {
            "id": ["tp", "fn_mild", "fp_bad", "tn", "fn_bad", "fp_tie"],
            "label": [1, 1, 0, 0, 1, 0],
            "probability": [0.9, 0.4, 0.95, 0.1, 0.05, 0.95],
        }
    )
    errors = cases.confident_errors(rows, threshold=0.5, count=3)
    assert errors["id"].tolist() == ["fn_bad", "fp_bad", "fp_tie"]


def test_borderline_closest_to_the_threshold():
    rows = pd.DataFrame(
        {"id": ["a", "b", "c"], "label": [1, 0, 1], "probability": [0.9, 0.52, 0.47]}
    )
    assert cases.borderline(rows, 0.5, 2)["id"].tolist() == ["b", "c"]


def test_thumbnail_names_are_safe_and_distinct():
    first, second = cases.thumbnail_name("benign/a b.png"), cases.thumbnail_name("benign/a_b.png")
    assert first != second
    assert all(character.isalnum() or character in "._-" for character in first)


def test_report_tables_link_each_case_thumbnail_relative_to_the_report():
    rows = pd.DataFrame({"id": ["x/a.png", "x/b.png"], "label": [1, 0], "probability": [0.1, 0.45]})
    review = cases.review_cases(rows, 0.5, 1)
    lines = cases.markdown(review, ["NORMAL", "PNEUMONIA"], Path("plots/d/cases"), Path("reports"))
    thumbnail = cases.thumbnail_name("x/a.png")
    assert (
        f"| `x/a.png` | PNEUMONIA | 0.100 | ![Grad-CAM of x/a.png](../plots/d/cases/{thumbnail}) |"
        in lines
    )
    assert any(line.startswith("| `x/b.png` | NORMAL | 0.450 |") for line in lines)


def test_a_kind_without_cases_is_one_line_not_an_empty_table():
    rows = pd.DataFrame({"id": ["x/a.png", "x/b.png"], "label": [1, 0], "probability": [0.9, 0.2]})
    lines = cases.markdown(
        cases.review_cases(rows, 0.5, 2), ["NORMAL", "PNEUMONIA"], Path("c"), Path("r")
    )
    assert "Most confident errors (test): none (no test image is misclassified)." in lines
    assert lines.count("| image | label | probability | Grad-CAM |") == 1  # the borderline table
