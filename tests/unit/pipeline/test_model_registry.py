"""dvc.yaml's model registry (`artifacts:`) lists the model of every dataset params.yaml trains, and
nothing else: DVC cannot generate the entries from `trained`, so they are written out and checked here."""

from __future__ import annotations

from ruamel.yaml import YAML

from medcls.demo.workspace import PROJECT
from medcls.pipeline.paths import DatasetPaths

ARTIFACTS = YAML(typ="safe", pure=True).load((PROJECT / "dvc.yaml").read_text())["artifacts"]


def test_every_trained_dataset_has_its_model_registered_and_nothing_else(project_params_file):
    assert sorted(ARTIFACTS) == sorted(project_params_file["trained"])


def test_each_artifact_is_its_datasets_model_labelled_with_dataset_and_task():
    for name, artifact in ARTIFACTS.items():
        assert artifact["path"] == DatasetPaths(name).model.as_posix()
        assert artifact["type"] == "model" and artifact["desc"]
        assert f"dataset:{name}" in artifact["labels"]
        assert any(label.startswith("task:") for label in artifact["labels"])
