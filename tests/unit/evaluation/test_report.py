"""The Markdown report shows the metrics document's own numbers, the baseline when there is one,
the test confusion matrix and figure links that resolve from the report's folder."""

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.evaluation import splits
from medcls.evaluation.document import Evaluation
from medcls.evaluation.report import write_report

CLASSES = ["Benign", "Malignant"]


def synthetic_predictions(seed: int, separation: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    probabilities = np.clip(rng.normal(0.5 + separation * (labels - 0.5), 0.2), 0, 1)
    return pd.DataFrame(
        {"split": np.repeat(["val", "test"], 100), "label": labels, "probability": probabilities}
    )


def evaluated(seed: int, separation: float) -> dict:
    return splits.evaluate_predictions(
        synthetic_predictions(seed, separation), rule="youden", n_bootstrap=50, seed=0
    )


@pytest.fixture(scope="module")
def document() -> dict:
    return evaluated(seed=0, separation=0.4)


@pytest.fixture
def figures(tmp_path) -> list[Path]:
    paths = [tmp_path / "plots" / "bus_uc" / name for name in ("roc.png", "gradcam.png")]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    return paths


def table_row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_metrics_table_has_val_and_test_with_intervals(document, figures, tmp_path):
    out_md = tmp_path / "reports" / "bus_uc.md"
    write_report(document, CLASSES, "bus_uc", out_md, figures)
    text = out_md.read_text()
    assert "| metric | model val | model test |" in text and "baseline" not in text
    val_auc, test_auc = table_row(text, "AUC")
    low, high = document["test"]["auc_ci95"]
    assert test_auc == f"{document['test']['auc']:.3f} ({low:.3f}–{high:.3f})"
    assert val_auc.startswith(f"{document['val']['auc']:.3f} (")
    assert table_row(text, "images") == [str(document["val"]["n"]), str(document["test"]["n"])]
    assert table_row(text, "threshold (chosen on val)") == [f"{document['threshold']:.3f}"] * 2


def test_confusion_matrix_is_the_test_counts(document, figures, tmp_path):
    out_md = tmp_path / "reports" / "bus_uc.md"
    write_report(document, CLASSES, "bus_uc", out_md, figures)
    text, test = out_md.read_text(), document["test"]
    assert "| actual \\ predicted | Benign | Malignant |" in text
    assert table_row(text, "Benign") == [str(test["tn"]), str(test["fp"])]
    assert table_row(text, "Malignant") == [str(test["fn"]), str(test["tp"])]


def test_figure_links_are_relative_to_the_report(document, figures, tmp_path):
    out_md = tmp_path / "reports" / "bus_uc.md"
    write_report(document, CLASSES, "bus_uc", out_md, figures)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", out_md.read_text())
    assert links == ["../plots/bus_uc/roc.png", "../plots/bus_uc/gradcam.png"]
    assert all((out_md.parent / link).is_file() for link in links)


def test_baseline_sits_beside_the_model(document, figures, tmp_path):
    with_baseline = copy.deepcopy(document)
    with_baseline["baseline"] = {**evaluated(seed=1, separation=0.1), "method": "logistic regression"}
    Evaluation.model_validate(with_baseline)
    out_md = tmp_path / "bus_uc.md"
    write_report(with_baseline, CLASSES, "bus_uc", out_md, figures)
    text = out_md.read_text()
    assert "| metric | model val | model test | baseline val | baseline test |" in text
    assert "Baseline: logistic regression" in text
    cells = table_row(text, "accuracy")
    assert cells[3].startswith(f"{with_baseline['baseline']['test']['accuracy']:.3f} (")
    assert table_row(text, "threshold (chosen on val)")[2] == f"{with_baseline['baseline']['threshold']:.3f}"


def test_undefined_values_read_n_a(document, figures, tmp_path):
    undefined = copy.deepcopy(document)
    undefined["test"].update(precision=None, auc=None, auc_ci95=[None, None])
    out_md = tmp_path / "bus_uc.md"
    write_report(undefined, CLASSES, "bus_uc", out_md, figures)
    text = out_md.read_text()
    assert table_row(text, "precision")[1] == "n/a" and table_row(text, "AUC")[1] == "n/a"


def test_missing_figure_is_named(document, tmp_path):
    with pytest.raises(FileNotFoundError, match="roc.png"):
        write_report(document, CLASSES, "bus_uc", tmp_path / "r.md", [tmp_path / "roc.png"])
