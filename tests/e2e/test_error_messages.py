"""Every expected failure of a stage or of `medcls predict` ends with one `error: ...` line that
says what to do, and a non-zero exit; no traceback (those are for bugs)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from medcls.data.manifest import build_manifest
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment
from medcls.images.tfrecords import write_tfrecords
from medcls.model.classifier import build_classifier
from medcls.params import load
from medcls.pipeline.paths import DatasetPaths
from tests.support.builders import NAME, ROI, one_dataset_params, write_params


def run(folder: Path, *command: str, **environment: str) -> subprocess.CompletedProcess:
    environment = command_environment() | {"PYTHONPATH": str(PROJECT)} | environment
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=folder, env=environment, capture_output=True, text=True
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for text in expected:
        assert text in last, last


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _unsafe_archive(folder: Path) -> tuple[str, list[str]]:
    (folder / "evil.zip").write_bytes(zip_bytes({"../evil.txt": b"x"}))
    return str(folder / "evil.zip"), ["'../evil.txt' would be written outside"]


def _not_an_archive(folder: Path) -> tuple[str, list[str]]:
    (folder / "notes.txt").write_text("not images")
    return str(folder / "notes.txt"), ["is not a zip or tar archive"]


def _bad_crc(folder: Path) -> tuple[str, list[str]]:
    content = b"pixels" * 100
    damaged = zip_bytes({"a/image.png": content}).replace(content, content[:-1] + b"!", 1)
    (folder / "damaged.zip").write_bytes(damaged)
    return str(folder / "damaged.zip"), [f"{folder / 'damaged.zip'} is damaged", "image.png"]


def _offline(folder: Path) -> tuple[str, list[str]]:
    return f"https://127.0.0.1:9/data.zip#sha256={'0' * 64}", ["could not be reached"]


def _missing_checksum(folder: Path) -> tuple[str, list[str]]:
    return "https://example.invalid/data.zip", ["has no valid checksum", "#sha256="]


def _plain_http(folder: Path) -> tuple[str, list[str]]:
    return "http://example.invalid/data.zip", ["plain http is refused", "https://"]


def _missing_folder(folder: Path) -> tuple[str, list[str]]:
    return str(folder / "nowhere"), ["does not exist", "accepted sources"]


@pytest.mark.parametrize(
    "make_source",
    [_unsafe_archive, _not_an_archive, _bad_crc, _offline, _missing_checksum, _plain_http,
     _missing_folder],
)
def test_download_failures(tmp_path, make_source, tiny_params):
    source, expected = make_source(tmp_path)
    write_params(tmp_path / "project", tiny_params(source=source))
    result = run(tmp_path / "project", "stages.download", NAME)
    assert_one_line_error(result, *expected)
    assert not (tmp_path / "project" / DatasetPaths(NAME).raw).exists()


def write_manifest(project: Path, patients_per_class: int) -> None:
    rows = [
        {"path": f"{name}/{patient}.png", "mask_paths": "", "label": label, "class_name": name,
         "group": f"{name}-{patient}", "sha256": f"{name}-{patient}", "width": 8, "height": 8}
        for label, name in enumerate(["NORMAL", "PNEUMONIA"])
        for patient in range(patients_per_class)
    ]
    path = project / DatasetPaths(NAME).manifest
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_a_class_without_usable_images_stops_the_manifest(tmp_path, tiny_params):
    project = tmp_path / "project"
    write_params(project, tiny_params(layout="kermany"))
    raw = project / DatasetPaths(NAME).raw
    synthetic.make_kermany(raw, n_patients_per_class=3, size=32)
    for image in raw.rglob("PNEUMONIA/*.jpeg"):
        image.write_bytes(b"not an image")
    assert_one_line_error(
        run(project, "stages.manifest", NAME), "no usable images of class 'PNEUMONIA'", "rejected.csv"
    )


def test_a_raw_folder_of_another_layout_is_named(tmp_path, tiny_params):
    project = tmp_path / "project"
    write_params(project, tiny_params(layout="kermany"))
    (project / DatasetPaths(NAME).raw / "scans").mkdir(parents=True)
    assert_one_line_error(
        run(project, "stages.manifest", NAME), "has the expected layout", "Check the dataset's `layout`"
    )


def test_too_few_images_to_split(tmp_path, tiny_params):
    project = tmp_path / "project"
    write_params(project, tiny_params())
    write_manifest(project, patients_per_class=2)
    assert_one_line_error(run(project, "stages.split", NAME), "too few independent groups", "Add data")


def test_a_seed_out_of_range_stops_at_validation(tmp_path, tiny_params):
    project = tmp_path / "project"
    write_params(project, tiny_params() | {"seed": 2**32})
    write_manifest(project, patients_per_class=10)
    assert_one_line_error(run(project, "stages.split", NAME), "seed: 4294967296 is outside")


@pytest.fixture(scope="module")
def one_class_project(tmp_path_factory) -> Path:
    """TFRecords whose every split holds NORMAL images only, and a small model."""
    project = tmp_path_factory.mktemp("one_class") / "project"
    write_params(project, one_dataset_params())
    raw = synthetic.make_kermany(project / "raw", n_patients_per_class=3, images_per_patient=1)
    manifest, _ = build_manifest(raw, "kermany", ["NORMAL", "PNEUMONIA"], workers=1)
    rows = manifest[manifest["label"] == 0].head(3).assign(split=["train", "val", "test"])
    paths = DatasetPaths(NAME)
    write_tfrecords(rows, raw, project / paths.tfrecords, images_per_shard=8, workers=1, **ROI)
    dataset = load(project / "params.yaml").dataset(NAME)
    model = build_classifier(dataset.backbone, dataset.head, dataset.image_size, seed=0)
    (project / paths.model).parent.mkdir(parents=True)
    model.save(project / paths.model)
    return project


def test_one_class_in_training(one_class_project):
    result = run(one_class_project, "stages.train", NAME)
    assert_one_line_error(result, "one class only", "both classes")


def test_one_class_in_validation(one_class_project):
    result = run(one_class_project, "stages.evaluate", NAME)
    assert_one_line_error(result, "val split holds one class only", "both classes")


@pytest.mark.parametrize("stage", ["evaluate", "predict"])
def test_a_truncated_model_is_named(one_class_project, tmp_path, stage, tiny_params):
    project = tmp_path / "project"
    paths = DatasetPaths(NAME)
    (project / paths.model).parent.mkdir(parents=True)
    model = (one_class_project / paths.model).read_bytes()
    (project / paths.model).write_bytes(model[: len(model) // 2])
    write_params(project, tiny_params())
    (project / "reports").mkdir()
    (project / paths.evaluation).write_text(json.dumps({"threshold": 0.5}))
    image = next((one_class_project / "raw").rglob("NORMAL/*.jpeg"))
    command = ["stages.evaluate", NAME] if stage == "evaluate" else ["medcls", "predict", "--dataset", NAME, str(image)]
    result = run(project, *command)
    assert_one_line_error(
        result, f"{paths.model} is not a readable .keras file", f"dvc repro train@{NAME}"
    )


def test_tensorflow_chatter_stays_out_unless_verbose(tmp_path, tiny_params):
    """A stage that imports TensorFlow and fails early prints its error line alone."""
    project = tmp_path / "project"
    write_params(project, tiny_params())
    quiet = run(project, "stages.train", NAME).stderr.strip().splitlines()
    assert len(quiet) == 1 and quiet[0].startswith("error: ") and "roi@demo" in quiet[0], quiet
    verbose = run(project, "stages.train", NAME, MEDCLS_VERBOSE="1").stderr.strip().splitlines()
    assert len(verbose) > 1 and verbose[-1] == quiet[0]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("seed: 42\nsplit: {train: 0.7\nworkers: 0\n", ["params.yaml: not valid YAML at line 3", "fix the syntax"]),
        ("seed: [42\n", ["params.yaml: not valid YAML at line 2", "fix the syntax"]),
        ("", ["params.yaml is empty", "docs/reference/params.md"]),
        ("# only a comment\n", ["params.yaml is empty"]),
    ],
    ids=["unclosed-mapping", "unclosed-list", "empty", "comment-only"],
)
@pytest.mark.parametrize("command", ["stage", "predict"])
def test_an_unreadable_params_file_is_one_line(tmp_path, content, expected, command):
    (tmp_path / "params.yaml").write_text(content)
    arguments = ["stages.validate"] if command == "stage" else ["medcls", "predict", "--dataset", NAME, "x.png"]
    result = run(tmp_path, *arguments)
    assert_one_line_error(result, *expected)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
