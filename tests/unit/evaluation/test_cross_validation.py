"""Cross-validation metrics: the threshold is chosen on the out-of-fold predictions and applied to
the ensemble's test predictions, each fold's own AUC is reported, and the document validates."""

import numpy as np
import pandas as pd
import pytest

from medcls.evaluation import metrics, paired, splits
from medcls.evaluation.document import Evaluation
from medcls.evaluation.report import write_report
from medcls.evaluation.review import Side, compared_splits

FOLDS = 4


def scored(seed: int, separation: float) -> pd.DataFrame:
    """val and test rows of a single model, out-of-fold rows of 4 folds, ensemble test rows."""
    rng = np.random.default_rng(seed)
    names = ["val"] * 60 + ["test"] * 60 + [splits.OUT_OF_FOLD] * 240 + [splits.ENSEMBLE_TEST] * 60
    labels = rng.integers(0, 2, len(names))
    return pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(len(names))],
            "split": names,
            "fold": [-1] * 120 + list(np.repeat(range(FOLDS), 60)) + [-1] * 60,
            "label": labels,
            "probability": np.clip(rng.normal(0.3 + separation * labels, 0.2), 0, 1),
        }
    )


def document_of(rows: pd.DataFrame) -> dict:
    options = dict(rule="youden", n_bootstrap=100, seed=0)
    return splits.evaluate_predictions(rows, **options) | splits.cross_validated(rows, **options)


def test_the_threshold_is_chosen_out_of_fold_and_applied_to_the_ensemble():
    rows = scored(seed=0, separation=0.4)
    document = document_of(rows)
    out_of_fold = rows[rows["split"] == splits.OUT_OF_FOLD]
    threshold = metrics.choose_threshold(out_of_fold["label"], out_of_fold["probability"], "youden")
    assert document["cross_validation"]["threshold"] == threshold
    ensemble = rows[rows["split"] == splits.ENSEMBLE_TEST]
    expected = metrics.binary_metrics(ensemble["label"], ensemble["probability"], threshold)
    assert {key: document["ensemble_test"][key] for key in expected} == expected
    assert document["out_of_fold"]["n"] == 240
    Evaluation.model_validate(document)


def test_each_folds_auc_is_that_of_its_own_rows():
    rows = scored(seed=1, separation=0.4)
    settings = document_of(rows)["cross_validation"]
    own = rows[(rows["split"] == splits.OUT_OF_FOLD) & (rows["fold"] == 2)]
    assert settings["fold_val_auc"][2] == pytest.approx(metrics.roc_auc(own["label"], own["probability"]))
    assert settings["fold_val_auc_mean"] == pytest.approx(np.mean(settings["fold_val_auc"]))
    assert settings["fold_val_auc_sd"] == pytest.approx(np.std(settings["fold_val_auc"], ddof=1))
    assert settings["folds"] == FOLDS


def test_a_cross_validation_without_its_predictions_is_refused():
    document = document_of(scored(seed=2, separation=0.4))
    del document["out_of_fold"]
    with pytest.raises(ValueError, match="out_of_fold"):
        Evaluation.model_validate(document)


def test_the_report_shows_out_of_fold_and_ensemble_beside_the_baseline(tmp_path):
    model, baseline = scored(seed=3, separation=0.5), scored(seed=3, separation=0.1)
    document = document_of(model)
    document["baseline"] = document_of(baseline) | {"method": "test baseline"}
    both = model.assign(baseline_probability=baseline["probability"])
    document["versus_baseline"] = paired.versus_baseline(
        both, ["test", splits.OUT_OF_FOLD], n_resamples=100, seed=0
    )
    Evaluation.model_validate(document)
    out_md = tmp_path / "report.md"
    write_report(document, ["Benign", "Malignant"], "busi", out_md, [])
    text = out_md.read_text()
    assert "## Cross-validation" in text and "baseline out-of-fold" in text
    assert "- out_of_fold: AUC" in text
    threshold_row = next(line for line in text.splitlines() if "chosen out-of-fold" in line)
    assert f"{document['cross_validation']['threshold']:.3f}" in threshold_row


def test_compare_covers_out_of_fold_and_external_splits_either_side_holds():
    folds = {"threshold": 0.4}
    headline = {"test": {"threshold": 0.5}, "external": {"other": {"threshold": 0.5}}}
    new = Side(
        scored(seed=4, separation=0.4),
        headline | {"out_of_fold": folds, "ensemble": folds, "ensemble_external": {"other": folds}},
    )
    old_rows = scored(seed=5, separation=0.4)
    old_rows.loc[old_rows.index[:5], "split"] = splits.external_split("other")
    old_rows.loc[old_rows.index[5:10], "split"] = splits.ensemble_external_split("other")
    old = Side(old_rows, headline)
    assert compared_splits(new, old) == [
        "test", splits.OUT_OF_FOLD, splits.ENSEMBLE_TEST, splits.external_split("other"),
        splits.ensemble_external_split("other"),
    ]
    assert new.threshold_for(splits.OUT_OF_FOLD) == 0.4 and new.threshold_for("test") == 0.5
    assert new.threshold_for(splits.ENSEMBLE_TEST) == 0.4
    assert new.threshold_for(splits.ensemble_external_split("other")) == 0.4
    assert new.threshold_for(splits.external_split("other")) == 0.5
    assert old.threshold_for(splits.ENSEMBLE_TEST) is None  # not cross-validated: no threshold
