"""Plots: DVC plot files hold every split, parse, are finite, keep their ends and match the
metrics; training-curve PNGs render."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from medcls.evaluation import metrics, plots
from medcls.training import curves

CLASSES = ["Benign", "Malignant"]
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    """1000 rows with fine-grained probabilities, so the raw curves exceed the point limit."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    return labels, np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)


@pytest.fixture(scope="module")
def curve_dir(tmp_path_factory, split) -> Path:
    """The test split, and a smaller val split beside it in the same files."""
    out_dir = tmp_path_factory.mktemp("plots")
    val = (split[0][:300], split[1][:300])
    plots.write_curve_data({"val": val, "test": split}, THRESHOLD, out_dir, CLASSES)
    return out_dir


def read_rows(path: Path, key: str, split: str = "test") -> list[dict]:
    """The rows of one split, without their `split` column."""
    rows = [
        {name: value for name, value in row.items() if name != "split"}
        for row in json.loads(path.read_text())[key]
        if row["split"] == split
    ]
    assert rows and all(math.isfinite(value) for row in rows for value in row.values())
    return rows


@pytest.mark.parametrize("chart", ["roc", "precision_recall", "calibration"])
def test_one_file_per_chart_holds_every_split(curve_dir, chart):
    rows = json.loads((curve_dir / f"{chart}.json").read_text())[chart]
    assert list(dict.fromkeys(row["split"] for row in rows)) == ["val", "test"]


def test_a_one_class_split_has_calibration_but_no_curves(tmp_path, split):
    external = ([1, 1, 1], [0.2, 0.6, 0.9])
    plots.write_curve_data({"test": split, "external:x": external}, THRESHOLD, tmp_path, CLASSES)
    splits = {
        chart: {row["split"] for row in json.loads((tmp_path / f"{chart}.json").read_text())[chart]}
        for chart in ("roc", "precision_recall", "calibration")
    }
    assert splits == {
        "roc": {"test"},
        "precision_recall": {"test"},
        "calibration": {"test", "external:x"},
    }


def test_roc_data_is_finite_downsampled_and_keeps_its_ends(curve_dir, split):
    assert len(plots.roc_points(*split)["fpr"]) > plots.MAX_CURVE_POINTS  # downsampling is exercised
    rows = read_rows(curve_dir / "roc.json", "roc")
    assert len(rows) <= plots.MAX_CURVE_POINTS
    assert (rows[0]["fpr"], rows[0]["tpr"]) == (0.0, 0.0) and rows[0]["threshold"] == 1.0
    assert (rows[-1]["fpr"], rows[-1]["tpr"]) == (1.0, 1.0)
    assert np.all(np.diff([row["fpr"] for row in rows]) >= 0)


def test_precision_recall_data_is_finite_and_keeps_its_ends(curve_dir):
    rows = read_rows(curve_dir / "precision_recall.json", "precision_recall")
    assert len(rows) <= plots.MAX_CURVE_POINTS
    assert rows[0]["recall"] == 1.0 and (rows[-1]["recall"], rows[-1]["precision"]) == (0.0, 1.0)


def test_calibration_data_matches_the_reported_ece(curve_dir, split):
    rows = read_rows(curve_dir / "calibration.json", "calibration")
    assert len(rows) <= 10 and sum(row["count"] for row in rows) == len(split[0])
    ece = sum(row["count"] * abs(row["mean_predicted"] - row["fraction_positive"]) for row in rows)
    assert ece / len(split[0]) == pytest.approx(metrics.binary_metrics(*split, THRESHOLD)["ece"])


def test_confusion_csv_has_one_named_row_per_example_matching_the_counts(curve_dir, split):
    table = pd.read_csv(curve_dir / "confusion.csv")
    assert list(table.columns) == ["actual", "predicted"] and len(table) == len(split[0])
    assert set(table["actual"]) == set(table["predicted"]) == set(CLASSES)
    pairs = table.value_counts()
    expected = metrics.binary_metrics(*split, THRESHOLD)
    assert pairs["Malignant", "Malignant"] == expected["tp"]
    assert pairs["Benign", "Malignant"] == expected["fp"]
    assert pairs["Benign", "Benign"] == expected["tn"]
    assert pairs["Malignant", "Benign"] == expected["fn"]


def test_the_test_split_needs_both_classes(tmp_path):
    with pytest.raises(ValueError, match="both classes"):
        plots.write_curve_data({"test": ([1, 1], [0.2, 0.9])}, THRESHOLD, tmp_path, CLASSES)


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 1000
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 100


def write_tsv(path: Path, rows: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rows)


def test_training_curves_put_train_and_val_of_a_metric_in_one_plot_file(tmp_path):
    metrics_dir = tmp_path / "dvclive" / "plots" / "metrics"
    write_tsv(metrics_dir / "train" / "loss.tsv", "step\tloss\n0\t0.9\n1\t0.6\n2\t0.5\n")
    write_tsv(metrics_dir / "eval" / "loss.tsv", "step\tloss\n0\t1.0\n1\t0.8\n2\t0.7\n")
    write_tsv(
        metrics_dir / "train" / "auc.tsv",
        "timestamp\tstep\tauc\n1700000000\t0\t0.6\n1700000060\t1\t0.7\n",
    )
    write_tsv(
        metrics_dir / "eval" / "auc.tsv",
        "timestamp\tstep\tauc\n1700000000\t0\t0.55\n1700000060\t1\t0.65\n",
    )
    write_tsv(metrics_dir / "train" / "accuracy.tsv", "step\taccuracy\n0\t0.5\n")
    written = curves.write_plot_files(tmp_path / "dvclive", tmp_path / "plots")
    assert [path.name for path in written] == ["training_auc.json", "training_loss.json"]
    auc = json.loads((tmp_path / "plots" / "training_auc.json").read_text())["auc"]
    assert auc == [
        {"step": 0, "split": "train", "auc": 0.6},
        {"step": 1, "split": "train", "auc": 0.7},
        {"step": 0, "split": "val", "auc": 0.55},
        {"step": 1, "split": "val", "auc": 0.65},
    ]
    loss = json.loads((tmp_path / "plots" / "training_loss.json").read_text())["loss"]
    assert [row["split"] for row in loss] == ["train"] * 3 + ["val"] * 3


def test_training_curves_need_tsvs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DVCLive .tsv files"):
        curves.write_plot_files(tmp_path, tmp_path / "plots")


def test_training_curves_name_a_malformed_tsv(tmp_path):
    write_tsv(tmp_path / "plots" / "metrics" / "train" / "loss.tsv", "step\tvalue\n0\t0.9\n")
    with pytest.raises(ValueError, match=r"loss\.tsv: expected columns step and loss"):
        curves.write_plot_files(tmp_path, tmp_path / "out")
