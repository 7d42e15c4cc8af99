"""External test sets: grouped (cluster) bootstrap, metrics at the training threshold in the metrics
file and the report, the rows chosen from another dataset, and the params that name them."""

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from medcls import params as medcls_params
from medcls.data import external
from medcls.demo.workspace import PROJECT
from medcls.evaluation import metrics, paired, splits
from medcls.evaluation.document import Evaluation
from medcls.evaluation.report import write_report
from medcls.params import ParamsError, validate
from medcls.pipeline.paths import DatasetPaths


def scores(n: int, seed: int, separation: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, np.clip(rng.normal(0.3 + separation * labels, 0.2), 0, 1)


def test_a_grouped_bootstrap_of_copies_is_the_image_bootstrap_of_the_originals():
    """Five copies of every image under one patient id: resampling patients gives exactly the
    interval of the originals, where resampling images would be far too narrow."""
    labels, probs = scores(80, seed=1)
    copies = np.repeat(np.arange(80), 5)
    options = dict(n_resamples=300, seed=0)
    originals = metrics.bootstrap_ci(labels, probs, 0.5, **options)
    grouped = metrics.bootstrap_ci(labels[copies], probs[copies], 0.5, groups=copies, **options)
    per_image = metrics.bootstrap_ci(labels[copies], probs[copies], 0.5, **options)
    assert grouped["auc_ci95"] == pytest.approx(originals["auc_ci95"])
    assert grouped["accuracy_ci95"] == pytest.approx(originals["accuracy_ci95"])
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    assert width(per_image["auc_ci95"]) < 0.7 * width(grouped["auc_ci95"])


def test_grouped_paired_difference_resamples_groups():
    labels, probs = scores(60, seed=2)
    copies = np.repeat(np.arange(60), 3)
    _, other = scores(60, seed=2, separation=0.2)
    pair = paired.paired_auc_difference(
        labels[copies], probs[copies], other[copies], n_resamples=200, seed=0, groups=copies
    )
    plain = paired.paired_auc_difference(labels, probs, other, n_resamples=200, seed=0)
    assert pair["auc_difference_ci95"] == pytest.approx(plain["auc_difference_ci95"])
    assert "60 groups (180 images)" in pair["method"]


def evaluated_with_external() -> dict:
    labels, probs = scores(400, seed=3)
    _, baseline_probs = scores(400, seed=4, separation=0.1)
    predictions = pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(400)],
            "group": [f"patient{i // 2}" for i in range(400)],
            "split": ["val"] * 150 + ["test"] * 150 + [splits.external_split("other")] * 100,
            "label": labels,
            "probability": probs,
            "baseline_probability": baseline_probs,
        }
    )
    options = dict(rule="youden", n_bootstrap=100, seed=0)
    external_options = dict(images="all", n_bootstrap=100, seed=0, by_group=True)
    document = splits.evaluate_predictions(predictions, **options)
    document["external"] = splits.external_metrics(
        predictions, document["threshold"], ["other"], **external_options
    )
    as_baseline = predictions.assign(probability=predictions["baseline_probability"])
    document["baseline"] = splits.evaluate_predictions(as_baseline, **options)
    document["baseline"]["external"] = splits.external_metrics(
        as_baseline, document["baseline"]["threshold"], ["other"], **external_options
    )
    document["baseline"]["method"] = "test baseline"
    document["versus_baseline"] = paired.versus_baseline(
        predictions, ["test"], n_resamples=100, seed=0
    )
    document["versus_baseline"]["external"] = {
        "other": paired.versus_baseline(
            predictions, [splits.external_split("other")], n_resamples=100, seed=0, by_group=True
        )[splits.external_split("other")]
    }
    return document


def test_external_metrics_use_the_validation_threshold_and_validate():
    document = evaluated_with_external()
    Evaluation.model_validate(document)
    other = document["external"]["other"]
    assert other["n"] == 100 and other["bootstrap_unit"] == "group" and other["images"] == "all"
    rows = scores(400, seed=3)
    expected = metrics.binary_metrics(rows[0][300:], rows[1][300:], document["threshold"])
    assert {key: other[key] for key in expected} == expected


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d["external"]["other"].update(tp=1.5), r"external\.other\.tp"),
        (lambda d: d["versus_baseline"]["external"]["other"].pop("method"), "method"),
        (lambda d: d["external"]["other"].pop("bootstrap_unit"), "bootstrap_unit"),
    ],
)
def test_validation_checks_the_external_entries(corrupt, message):
    document = evaluated_with_external()
    corrupt(document)
    with pytest.raises(ValueError, match=message):
        Evaluation.model_validate(document)


def test_the_report_has_a_row_per_external_test_set(tmp_path):
    document = evaluated_with_external()
    out_md = tmp_path / "report.md"
    write_report(document, ["Benign", "Malignant"], "busi", out_md, [])
    text = out_md.read_text()
    assert "## External test sets" in text and "whole patients (groups)" in text
    row = next(line for line in text.splitlines() if line.startswith("| other |"))
    pair = document["versus_baseline"]["external"]["other"]
    assert f"{document['external']['other']['auc']:.3f}" in row
    assert paired.difference_text(pair["auc_difference"], pair["auc_difference_ci95"]) in row


def test_test_images_are_the_manifest_or_the_test_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = DatasetPaths("other")
    rows = pd.DataFrame(
        {
            "path": list("abcd"),
            "label": [0, 1, 0, 1],
            "class_name": ["n", "p", "n", "p"],
            "group": list("abcd"),
            "split": ["train", "test", "val", "test"],
        }
    )
    paths.split.parent.mkdir(parents=True)
    paths.manifest.parent.mkdir(parents=True)
    rows.drop(columns="split").to_csv(paths.manifest, index=False)
    rows.to_csv(paths.split, index=False)
    every = external.test_images(paths.manifest, paths.split, "all")
    assert list(every["path"]) == list("abcd")
    assert list(external.test_images(paths.manifest, paths.split, "test")["path"]) == ["b", "d"]
    summary = external.describe(every, "all")
    assert summary["per_label"] == {"0": 2, "1": 2} and summary["classes"] == ["n", "p"]


def project_params() -> dict:
    return YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())


@pytest.mark.parametrize("other", ["bus_uc", "nowhere"])
def test_external_must_name_another_dataset(other):
    params = project_params()
    params["datasets"]["bus_uc"]["evaluate"]["external"] = [other]
    with pytest.raises(ParamsError, match=rf"^datasets.bus_uc.evaluate.external\[0\]: '{other}'"):
        validate(params)


def test_external_defaults_to_none():
    settings = validate(project_params()).dataset("bus_uc").evaluate
    assert settings.external == [] and settings.external_images == "all"
    assert settings.external_bootstrap == "group"


def with_test_only(params: dict) -> dict:
    params["datasets"]["hospital2"] = {
        "source": "/data/hospital2", "layout": "busi", "classes": ["benign", "malignant"], "test_only": True,
    }
    params["datasets"]["bus_uc"]["evaluate"]["external"] = ["hospital2"]
    return params


def test_a_test_only_dataset_needs_no_model_params_and_can_be_tested_on():
    typed = validate(with_test_only(project_params()))
    assert isinstance(typed.dataset("hospital2"), medcls_params.TestOnlyDataset)
    assert typed.dataset("bus_uc").evaluate.external == ["hospital2"]
    with pytest.raises(ParamsError, match="hospital2 is test_only: it has no model"):
        typed.trained_dataset("hospital2")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(trained=["bus_uc", "chest_xray", "hospital2"]), r"trained\[2\]: 'hospital2' is test_only: it has no model"),
        (lambda p: p.update(trained=["chest_xray", "bus_uc"]), r"trained: must be \['bus_uc', 'chest_xray'\]"),
        (lambda p: p["datasets"]["hospital2"].update(image_size=64), "datasets.hospital2.image_size: unknown key"),
        (lambda p: p["datasets"]["hospital2"].update(test_only=False), "datasets.hospital2.test_only"),
    ],
)
def test_trained_must_list_the_datasets_with_a_model(change, message):
    params = with_test_only(project_params())
    change(params)
    with pytest.raises(ParamsError, match=message):
        validate(params)
