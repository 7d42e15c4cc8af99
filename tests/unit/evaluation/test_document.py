"""The typed evaluation document and its headline: scalars only, few enough for DVC's tables,
the same numbers as the full document, and null intervals without a bootstrap."""

import json

import numpy as np
import pandas as pd
import pytest

from medcls.evaluation import paired, splits
from medcls.evaluation.document import Evaluation, Headline, headline
from medcls.params import validate
from tests.support.builders import project_params


def predictions(seed: int, separation: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    splits = np.repeat(["val", "test"], 80)
    labels = rng.integers(0, 2, splits.size)
    return pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(splits.size)],
            "split": splits,
            "label": labels,
            "probability": np.clip(rng.normal(0.3 + separation * labels, 0.2), 0, 1),
        }
    )


def evaluation(n_bootstrap: int = 100, with_baseline: bool = True) -> Evaluation:
    """A document of the evaluate stage's shape: the model, and optionally the baseline with the
    paired difference on test."""
    options = dict(rule="youden", n_bootstrap=n_bootstrap, seed=0)
    model = predictions(seed=1)
    document = splits.evaluate_predictions(model, **options)
    if with_baseline:
        baseline = predictions(seed=1, separation=0.1)
        document["baseline"] = splits.evaluate_predictions(baseline, **options) | {"method": "lr"}
        both = model.assign(baseline_probability=baseline["probability"])
        document["versus_baseline"] = paired.versus_baseline(
            both, ["test"], n_resamples=n_bootstrap, seed=0
        )
    return Evaluation.model_validate(document)


def flattened(document: dict, prefix: str = "") -> dict:
    """Keys as `dvc metrics show` names them (`test.auc`)."""
    flat = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat |= flattened(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_the_headline_repeats_the_documents_numbers():
    full = evaluation()
    top = headline(full).as_json()
    assert top["test"]["auc"] == full.test.auc
    assert [top["test"]["auc_low"], top["test"]["auc_high"]] == list(full.test.auc_ci95)
    assert top["test"]["sensitivity_low"] <= top["test"]["sensitivity"] <= top["test"]["sensitivity_high"]
    assert top["test"]["threshold"] == full.threshold and top["val"]["n"] == full.val.n
    pair = full.versus_baseline.test
    assert top["test"]["vs_baseline"] == pair.auc_difference
    assert top["test"]["vs_baseline_high"] == pair.auc_difference_ci95[1]


def test_the_default_params_headlines_are_at_most_60_scalars():
    params = validate(project_params())
    values = {}
    for name in params.trained:
        settings = params.datasets[name].evaluate
        assert not settings.external and params.split.folds == 1  # else the shape below is wrong
        top = headline(evaluation(with_baseline=settings.baseline)).as_json()
        values |= {f"{name}.{key}": value for key, value in flattened(top).items()}
    assert len(values) <= 60
    assert all(value is None or isinstance(value, int | float) for value in values.values())


def test_without_a_bootstrap_every_interval_is_null():
    full = evaluation(n_bootstrap=0)
    assert full.test.auc_ci95 == (None, None) and full.val.specificity_ci95 == (None, None)
    assert full.versus_baseline.test.auc_difference_ci95 == (None, None)
    top = headline(full).as_json()
    assert top["test"]["auc"] is not None
    assert {key: value for key, value in flattened(top).items() if key.endswith(("_low", "_high"))}
    assert all(
        value is None for key, value in flattened(top).items() if key.endswith(("_low", "_high"))
    )
    json.dumps(full.as_json(), allow_nan=False)


def test_the_schemas_come_from_the_models():
    schema = Headline.model_json_schema()
    assert "array" not in json.dumps(schema)  # DVC drops lists: the headline has none
    assert "auc_ci95" in json.dumps(Evaluation.model_json_schema())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(note=1), "note"),
        (lambda d: d["test"].update(brier=float("nan")), r"test\.brier"),
        (lambda d: d["val"].pop("f1"), r"val\.f1"),
        (lambda d: d.pop("baseline"), "versus_baseline needs the baseline"),
    ],
)
def test_malformed_documents_are_refused_by_key(change, message):
    document = evaluation().as_json()
    change(document)
    with pytest.raises(ValueError, match=message):
        Evaluation.model_validate(document)
