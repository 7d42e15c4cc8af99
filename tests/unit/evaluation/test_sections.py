"""The evaluation as one list of sections: every section is computed for every scorer (or the model
alone) and shown in the report in the list's order, so a new section is one entry of
`sections.SECTIONS`. Made-up predictions, no TensorFlow model."""

from __future__ import annotations

import pandas as pd
import pytest

from medcls.evaluation import sections
from medcls.evaluation.document import Evaluation
from medcls.evaluation.report import write_report
from medcls.evaluation.sections import BASELINE, MODEL, Plan, Scored, Section
from medcls.params import SubgroupMinSize
from tests.support.scored_sides import scored_rows

CLASSES = ["benign", "malignant"]


def plan(model: pd.DataFrame, baseline: pd.DataFrame) -> Plan:
    """The model and a baseline scored on the same made-up images."""
    return Plan(
        scorers={
            MODEL: Scored(MODEL, model),
            BASELINE: Scored(BASELINE, baseline, {"method": "made up"}),
        },
        rule="youden",
        n_bootstrap=50,
        seed=0,
        folded=False,
        source_of=None,
        external=[],
        external_images="all",
        by_group=False,
        subgroup_values={},
        subgroup_limit=SubgroupMinSize(),
    )


def mean_probability(scored: Scored, plan: Plan) -> dict:
    return {"mean_probability": float(scored.rows["probability"].mean())}


def show_mean(document, page) -> list[str]:
    return [f"## Mean probability {document['mean_probability']:.4f}", ""]


def test_the_baseline_gets_every_section_the_model_gets_and_the_model_its_pairing():
    model, baseline = scored_rows(0.6), scored_rows(0.3)
    document = Evaluation.model_validate(sections.compute(plan(model, baseline))).as_json()
    assert {"threshold", "val", "test", "cases", "versus_baseline"} <= document.keys()
    assert {"threshold", "threshold_rule", "val", "test", "method"} == document[BASELINE].keys()
    assert document["test"]["auc"] > document[BASELINE]["test"]["auc"]
    assert document["versus_baseline"]["test"]["auc_difference"] > 0


@pytest.mark.parametrize("model_only", [False, True])
def test_a_new_section_is_one_entry_computed_and_shown_in_its_place(
    monkeypatch, tmp_path, model_only
):
    added = Section("mean_probability", mean_probability, show_mean, model_only=model_only)
    at = 2  # after the metrics and the baseline's method
    monkeypatch.setattr(
        sections, "SECTIONS", (*sections.SECTIONS[:at], added, *sections.SECTIONS[at:])
    )
    model, baseline = scored_rows(0.6), scored_rows(0.3)
    document = sections.compute(plan(model, baseline))
    assert document["mean_probability"] == pytest.approx(model["probability"].mean())
    assert ("mean_probability" in document[BASELINE]) is not model_only

    report = tmp_path / "report.md"
    write_report(document, CLASSES, "busi", report, [])
    headings = [line for line in report.read_text().splitlines() if line.startswith("## ")]
    assert headings[:3] == [
        "## Metrics",
        f"## Mean probability {model['probability'].mean():.4f}",
        "## Model vs baseline",
    ]
