"""`benchmarks.robustness --ensemble`: the mean of measured variants' kept predictions, scored as
the pipeline scores one model (threshold on val, external intervals by patient, paired differences
against the first variant)."""

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from benchmarks import real_data, robustness
from medcls.evaluation import metrics, paired, splits

SPLITS = {"val": 40, "test": 40, splits.external_split(robustness.EXTERNAL): 30}


def kept_predictions(workspace, name: str, noise: float, seed: int) -> None:
    """A variant's predictions file and params as `run_variant` keeps them: labels alike in every
    variant, probabilities the label blurred by `noise`."""
    rng = np.random.default_rng(seed)
    frames = []
    for split, count in SPLITS.items():
        labels = np.arange(count) % 2
        frames.append(pd.DataFrame({
            "id": [f"images/P{index % 6:03d}_{index:03d}.png" for index in range(count)],
            "split": split,
            "label": labels,
            "probability": np.clip(labels + rng.normal(0, noise, count), 0, 1),
        }))
    results = workspace / robustness.RESULTS
    results.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(results / f"{name}.predictions.csv", index=False)
    with open(results / f"{name}.params.yaml", "w") as file:
        YAML(typ="safe", pure=True).dump(real_data.resolved_profile([robustness.DATASET]), file)


@pytest.fixture
def workspace(tmp_path):
    kept_predictions(tmp_path, "weak", noise=0.9, seed=0)
    kept_predictions(tmp_path, "strong", noise=0.3, seed=1)
    external = tmp_path / "data" / "manifest" / f"{robustness.EXTERNAL}.csv"
    external.parent.mkdir(parents=True)
    ids = [f"images/P{index % 6:03d}_{index:03d}.png" for index in range(30)]
    pd.DataFrame({"path": ids, "group": [name[7:11] for name in ids]}).to_csv(external, index=False)
    return tmp_path


def row(text: str, first_cell: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {first_cell}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_variant_alone_is_its_own_scores_and_no_difference(workspace):
    text = robustness.ensemble(workspace, ["weak"])
    weak = pd.read_csv(workspace / "robustness" / "weak.predictions.csv")
    val = weak[weak["split"] == "val"]
    val_auc = metrics.roc_auc(val["label"], val["probability"])
    assert row(text, "ensemble")[1].startswith(f"{val_auc:.3f} [")
    assert row(text, "minus weak")[1:4] == ["+0.000 [+0.000, +0.000]"] * 3


def test_the_ensemble_scores_the_mean_probability_and_pairs_it_with_the_first(workspace):
    text = robustness.ensemble(workspace, ["weak", "strong"])
    frames = [
        pd.read_csv(workspace / "robustness" / f"{name}.predictions.csv") for name in ("weak", "strong")
    ]
    test = frames[0]["split"] == "test"
    mean = (frames[0]["probability"] + frames[1]["probability"]) / 2
    ensemble_auc = metrics.roc_auc(frames[0]["label"][test], mean[test])
    weak_auc = metrics.roc_auc(frames[0]["label"][test], frames[0]["probability"][test])
    assert row(text, "ensemble")[2].startswith(f"{ensemble_auc:.3f} [")
    assert row(text, "minus weak")[2].startswith(paired.signed(ensemble_auc - weak_auc) + " [")
    assert ensemble_auc > weak_auc
