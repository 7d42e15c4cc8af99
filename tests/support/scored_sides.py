"""Predictions and headline metrics of made-up models, written as the evaluate stage writes them
(`data/predictions/<name>.csv`, `metrics/<name>.json` in the headline format), for the tests of
`medcls compare` and `medcls review`.

Run as a module (`python -m tests.support.scored_sides`), it is the one stage of their tiny DVC project:
it scores NAME at the `separation` and `threshold` of the workspace's params.yaml, so
`dvc exp run -S separation=...` makes a real experiment in seconds, without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from medcls.evaluation import metrics
from medcls.pipeline.outputs import write_json

NAME = "busi"
IMAGES = 200  # alternately val and test
BOOTSTRAP = 200


def scores(n: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities: the larger `separation`, the better the made-up model; the same
    seed gives the same labels and noise whatever the separation."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, np.clip(rng.normal(0.5 + separation * (labels - 0.5), 0.2), 0, 1)


def scored_rows(separation: float, seed: int = 7) -> pd.DataFrame:
    """Predictions of IMAGES images (ids `case/<i>.png`), half val and half test."""
    labels, probabilities = scores(IMAGES, seed=seed, separation=separation)
    return pd.DataFrame(
        {
            "split": ["val", "test"] * (IMAGES // 2),
            "id": [f"case/{i}.png" for i in range(IMAGES)],
            "label": labels,
            "probability": probabilities,
        }
    )


def headline(predictions: pd.DataFrame, threshold: float) -> dict:
    """The test section of the headline metrics: n, AUC with its interval, the threshold."""
    test = predictions[predictions["split"] == "test"]
    labels, probabilities = test["label"].to_numpy(), test["probability"].to_numpy()
    low, high = metrics.bootstrap_ci(
        labels, probabilities, threshold, n_resamples=BOOTSTRAP, seed=0
    )["auc_ci95"]
    return {
        "test": {
            "n": len(test),
            "auc": metrics.roc_auc(labels, probabilities),
            "auc_low": low,
            "auc_high": high,
            "threshold": threshold,
        }
    }


def write_side(folder: Path, name: str, predictions: pd.DataFrame, threshold: float) -> None:
    """`predictions` and their headline metrics under `folder`, where the pipeline puts them."""
    for subfolder in ("data/predictions", "metrics"):
        (folder / subfolder).mkdir(parents=True, exist_ok=True)
    predictions.to_csv(folder / f"data/predictions/{name}.csv", index=False)
    write_json(folder / f"metrics/{name}.json", headline(predictions, threshold))


if __name__ == "__main__":
    params = YAML(typ="safe", pure=True).load(Path("params.yaml").read_text())
    write_side(Path("."), NAME, scored_rows(params["separation"]), params["threshold"])
