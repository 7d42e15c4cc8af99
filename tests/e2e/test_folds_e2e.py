"""End to end: cross-validation (`split.folds: 2`) in a temporary git repository, on two small
generated breast-ultrasound sets: one train_fold stage per dataset and fold, out-of-fold
predictions covering train + val once, the ensemble on test (also in `medcls predict`), and which
stages a params change makes stale.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls.demo.workspace import command_environment
from medcls.demo.workspace import run_in as run
from medcls.evaluation import splits
from medcls.evaluation.document import Evaluation
from medcls.images.decode import mask_paths_of
from tests.support.builders import (
    first_repro_stages,
    generate_sources,
    reproduced_workspace,
    tiny_pipeline_params,
)

pytestmark = pytest.mark.e2e

DATASETS = ("bus_uc", "busi")
FOLDS = 2  # the fewest that cross-validate: each fold's model predicts the images it did not train on
ALWAYS_RUN = {"validate"} | {f"source@{name}" for name in DATASETS}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folds")
    params = tiny_pipeline_params(generate_sources(root, DATASETS))
    params["split"].update(folds=FOLDS, fold_ids=list(range(FOLDS)))
    return reproduced_workspace(root, params)


def test_every_fold_is_a_stage_of_its_own(repo):
    ran = first_repro_stages(repo)
    folds = {f"train_fold@{name}-{fold}" for name in DATASETS for fold in range(FOLDS)}
    assert folds | {f"train@{name}" for name in DATASETS} <= ran
    for name in DATASETS:
        for fold in range(FOLDS):
            assert (repo / f"models/{name}/fold{fold}/model.keras").is_file()
            summary = json.loads((repo / f"reports/{name}_fold{fold}_train.json").read_text())
            rows = pd.read_csv(repo / f"data/split/{name}.csv", keep_default_na=False)
            assert summary["train_images"] == ((rows["fold"] >= 0) & (rows["fold"] != fold)).sum()


def test_out_of_fold_predictions_cover_train_and_val_exactly_once(repo):
    for name in DATASETS:
        rows = pd.read_csv(repo / f"data/split/{name}.csv", keep_default_na=False)
        predictions = pd.read_csv(repo / f"data/predictions/{name}.csv")
        out_of_fold = predictions[predictions["split"] == splits.OUT_OF_FOLD]
        pooled = rows[rows["split"] != "test"]
        assert out_of_fold["id"].is_unique
        assert set(out_of_fold["id"]) == set(pooled["path"])
        assert dict(zip(out_of_fold["id"], out_of_fold["fold"])) == dict(zip(pooled["path"], pooled["fold"]))
        ensemble = predictions[predictions["split"] == splits.ENSEMBLE_TEST]
        assert sorted(ensemble["id"]) == sorted(rows.loc[rows["split"] == "test", "path"])


def test_metrics_hold_the_cross_validation_beside_the_single_model(repo):
    for name in DATASETS:
        document = json.loads((repo / f"reports/{name}.json").read_text())
        Evaluation.model_validate(document)
        top = json.loads((repo / f"metrics/{name}.json").read_text())
        assert top["ensemble"]["auc"] == document["ensemble_test"]["auc"]
        assert top["out_of_fold"]["threshold"] == document["cross_validation"]["threshold"]
        settings = document["cross_validation"]
        assert settings["folds"] == FOLDS and len(settings["fold_val_auc"]) == FOLDS
        assert document["out_of_fold"]["n"] == len(pd.read_csv(repo / f"data/split/{name}.csv").query("split != 'test'"))
        assert document["ensemble_test"]["n"] == document["test"]["n"]
        assert document["baseline"]["out_of_fold"]["n"] == document["out_of_fold"]["n"]
        assert set(document["versus_baseline"]) == {"test", "out_of_fold", "ensemble_test"}
        assert "## Cross-validation" in (repo / f"reports/{name}.md").read_text()


def test_predict_uses_the_ensemble_at_its_out_of_fold_threshold(repo):
    raw = Path("data/raw/bus_uc")
    predictions = pd.read_csv(repo / "data/predictions/bus_uc.csv")
    ensemble = predictions[predictions["split"] == splits.ENSEMBLE_TEST]
    masks = pd.read_csv(repo / "data/split/bus_uc.csv", keep_default_na=False).set_index("path")["mask_paths"]
    images = [str(raw / image_id) for image_id in ensemble["id"]]
    mask_args = [";".join(str(raw / mask) for mask in mask_paths_of(masks[image_id])) for image_id in ensemble["id"]]
    command = ["python", "-m", "medcls", "predict", "--dataset", "bus_uc", "--json", *images, "--mask", *mask_args]
    completed = subprocess.run(command, cwd=repo, env=command_environment(), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    document = json.loads((repo / "reports/bus_uc.json").read_text())
    assert result["threshold"] == document["cross_validation"]["threshold"]
    predicted = {Path(row["path"]).relative_to(raw).as_posix(): row["probability"] for row in result["predictions"]}
    for row in ensemble.itertuples():
        assert predicted[row.id] == pytest.approx(row.probability, abs=1e-5), row.id


def test_compare_pairs_the_cross_validation_predictions(repo):
    compared = run(repo, "python", "-m", "medcls", "compare", "HEAD", "--resamples", "50")
    for split in ("test", "out_of_fold", "ensemble_test"):
        assert f"| busi | {split} |" in compared


def stale_after(repo: Path, change) -> set[str]:
    """The stages `dvc status` reports after `change` to the params (evaluate follows the models
    they retrain, so it is not listed yet)."""
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = YAML().load(original)
    change(params)
    with params_file.open("w") as stream:
        YAML().dump(params, stream)
    try:
        return set(json.loads(run(repo, "dvc", "status", "--json"))) - ALWAYS_RUN
    finally:
        params_file.write_text(original)


def test_a_dataset_param_makes_only_that_datasets_training_stale(repo):
    def wider_dropout(params):
        params["datasets"]["busi"]["head"]["dropout"] = 0.3

    expected = {"train@busi"} | {f"train_fold@busi-{fold}" for fold in range(FOLDS)}
    assert stale_after(repo, wider_dropout) == expected


def test_a_new_learning_rate_makes_only_training_stale(repo):
    def lower_lr(params):
        params["lr"] = 1e-5

    expected = {f"train@{name}" for name in DATASETS}
    expected |= {f"train_fold@{name}-{fold}" for name in DATASETS for fold in range(FOLDS)}
    assert stale_after(repo, lower_lr) == expected
