"""Training is repeatable by default: the train and evaluate stages run twice on the same data
and params write the same weights and a byte-identical reports/<name>.json."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from medcls.model.classifier import load_classifier
from medcls.params import load
from medcls.pipeline.paths import DatasetPaths
from stages.evaluate import evaluate
from stages.train import train
from tests.support.builders import NAME, make_project, one_dataset_params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Augmented training (rotation, shift, zoom, brightness) on small generated chest X-rays."""
    augment = {"rotation": 20, "shift": 0.1, "zoom": 0.1, "brightness": [0.8, 1.2]}
    return make_project(tmp_path_factory.mktemp("determinism") / "project", one_dataset_params(augment=augment))


def train_and_evaluate(project: Path) -> tuple[bytes, list[np.ndarray]]:
    """The train and evaluate stages, in this process; the metrics file and the trained weights."""
    params, paths = load(project / "params.yaml"), DatasetPaths(NAME)
    train(NAME, params, params.dataset(NAME), paths)
    evaluate(NAME, params, params.dataset(NAME), paths)
    return (project / paths.evaluation).read_bytes(), load_classifier(project / paths.model).get_weights()


def test_two_runs_give_identical_metrics_and_weights(project, monkeypatch):
    monkeypatch.chdir(project)
    first_metrics, first_weights = train_and_evaluate(project)
    keras.backend.clear_session()
    second_metrics, second_weights = train_and_evaluate(project)
    assert first_metrics == second_metrics
    assert all(np.array_equal(a, b) for a, b in zip(first_weights, second_weights, strict=True))
