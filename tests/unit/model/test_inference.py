"""Prediction on image files: input expansion, mask pairing and policy, pipeline-identical
preprocessing, and the `medcls predict` command line (exit codes, JSON, skipped files)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from ruamel.yaml import YAML

from medcls import cli, predict
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment
from medcls.images.roi import prepare_file
from medcls.model.classifier import build_classifier
from medcls.params import load
from tests.support.models import PLAIN_HEAD, SMALL_CNN

SIZE = 32
THRESHOLD = 0.5
IMAGES = Path(synthetic.BUS_UC_ROOT) / "Benign" / "images"
MASKS = Path(synthetic.BUS_UC_ROOT) / "Benign" / "masks"
UNDECODABLE = next(
    Path(path) for path, reason in synthetic.BUS_UC_FAULTS.items() if reason == "undecodable image"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project directory as `dvc repro` leaves it for bus_uc (32 px, a small CNN), with raw data."""
    root = tmp_path_factory.mktemp("project")
    synthetic.make_bus_uc(root, n_per_class=6, size=48)
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"]["bus_uc"]["image_size"] = SIZE
    with (root / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)
    model = build_classifier(SMALL_CNN, PLAIN_HEAD, SIZE, seed=0)
    (root / "models" / "bus_uc").mkdir(parents=True)
    model.save(root / "models" / "bus_uc" / "model.keras")
    (root / "reports").mkdir()
    (root / "reports" / "bus_uc.json").write_text(json.dumps({"threshold": THRESHOLD}))
    return root


@pytest.fixture
def in_project(project, monkeypatch) -> Path:
    monkeypatch.chdir(project)
    return project


def good_images(count: int = 3) -> list[str]:
    """Benign images 004.. (001 is undecodable, 002 has no mask, 003's mask has another name)."""
    return [str(IMAGES / f"{number:03d}.png") for number in range(4, 4 + count)]


def masks_of(images: list[str]) -> list[str]:
    return [str(MASKS / Path(image).name) for image in images]


def test_inputs_expand_folders_and_globs_to_sorted_images(in_project):
    folder = predict.expand_inputs([str(IMAGES.parent.parent / "images")])
    assert folder and all(path.suffix == ".png" for path in folder) and folder == sorted(folder)
    assert Path(synthetic.BUS_UC_ROOT) / "Description.txt" not in folder
    globbed = predict.expand_inputs([f"{synthetic.BUS_UC_ROOT}/**/masks/*.png"])
    assert len(globbed) == len(set(globbed)) and all(path.parent.name == "masks" for path in globbed)
    named = predict.expand_inputs([f"{synthetic.BUS_UC_ROOT}/Description.txt", "missing.png"])
    assert named == [Path(synthetic.BUS_UC_ROOT) / "Description.txt", Path("missing.png")]
    with pytest.raises(predict.InputError, match="no image files"):
        predict.expand_inputs(["nowhere/*.png"])


def test_masks_pair_one_per_image_in_order(in_project):
    images = [Path(image) for image in good_images(2)]
    pairs = predict.pair_masks(images, [masks_of(good_images(1))[0], "a.png;b.png"])
    assert pairs == [(MASKS / "004.png",), (Path("a.png"), Path("b.png"))]
    assert predict.pair_masks(images, []) == [(), ()]
    with pytest.raises(predict.InputError, match="2 images but 1 masks"):
        predict.pair_masks(images, ["a.png"])


@pytest.mark.parametrize(
    "uses_mask, has_masks, whole_image, message",
    [(True, False, False, "pass one --mask per image"), (True, True, True, "exclude each other")],
)
def test_mask_policy_refuses_silent_differences(uses_mask, has_masks, whole_image, message):
    with pytest.raises(predict.InputError, match=message):
        predict.mask_warning("bus_uc", uses_mask, has_masks, whole_image)


@pytest.mark.parametrize(
    "uses_mask, has_masks, whole_image, warning",
    [
        (True, True, False, None),
        (False, False, False, None),
        (True, False, True, "warning: --no-mask"),
        (False, True, False, "--mask is ignored"),
    ],
)
def test_mask_policy_warns_about_deliberate_differences(uses_mask, has_masks, whole_image, warning):
    result = predict.mask_warning("bus_uc", uses_mask, has_masks, whole_image)
    assert result is None if warning is None else warning in result


def test_predictor_scores_the_pipelines_prepared_input(in_project):
    params = load()
    predictor = predict.Predictor.for_dataset("bus_uc", params)
    images = good_images()
    predictions, failures, prepared = predictor.predict_files(
        [Path(image) for image in images], [(Path(mask),) for mask in masks_of(images)]
    )
    expected_inputs = np.stack(
        [
            prepare_file(Path(), image, [mask], roi=params.datasets["bus_uc"].roi, size=SIZE)
            for image, mask in zip(images, masks_of(images))
        ]
    )
    np.testing.assert_array_equal(prepared, expected_inputs)
    (model,) = predictor.models
    expected = keras.ops.convert_to_numpy(model(expected_inputs.astype("float32")))
    assert failures == []
    assert [p.probability for p in predictions] == pytest.approx(expected.reshape(-1).tolist(), abs=1e-6)
    for prediction in predictions:
        assert prediction.label == int(prediction.probability >= THRESHOLD)
        assert prediction.class_name == ["Benign", "Malignant"][prediction.label]


def test_cli_skips_unreadable_files_reports_them_and_exits_1(in_project, capsys):
    images = [str(UNDECODABLE), *good_images(2)]
    status = cli.main(["predict", "--dataset", "bus_uc", "--json", *images, "--mask", *masks_of(images)])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert status == 1
    assert f"skipped {UNDECODABLE}: cannot decode image" in captured.err
    assert [row["path"] for row in result["predictions"]] == good_images(2)
    assert result["failures"][0]["path"] == str(UNDECODABLE)
    assert result["threshold"] == THRESHOLD and result["classes"] == ["Benign", "Malignant"]


def test_cli_prints_one_line_per_image(in_project, capsys):
    images = good_images(2)
    assert cli.main(["predict", "--dataset", "bus_uc", *images, "--mask", *masks_of(images)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    path, probability, class_name, threshold = lines[0].split("\t")
    assert 0 <= float(probability) <= 1 and class_name in ("Benign", "Malignant")
    assert threshold == f"threshold {THRESHOLD:.6f}"


def test_cli_needs_masks_for_a_mask_dataset_unless_told_otherwise(in_project, capsys):
    assert cli.main(["predict", "--dataset", "bus_uc", *good_images(1)]) == 2
    assert "--no-mask" in capsys.readouterr().err
    explanation = in_project / "explain.png"
    status = cli.main(
        ["predict", "--dataset", "bus_uc", *good_images(2), "--no-mask", "--explain", str(explanation)]
    )
    assert status == 0
    assert "warning: --no-mask" in capsys.readouterr().err
    assert explanation.stat().st_size > 0


def test_cli_names_the_missing_model_and_the_unknown_dataset(in_project, capsys):
    assert cli.main(["predict", "--dataset", "chest_xray", "x.png"]) == 1
    assert "run `dvc repro evaluate@chest_xray` first" in capsys.readouterr().err
    assert cli.main(["predict", "--dataset", "nope", "x.png"]) == 1
    assert "datasets.nope: no such dataset" in capsys.readouterr().err


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_cli_skips_an_image_whose_mask_has_another_size(in_project, capsys, scale):
    """The manifest's rule: a mask twice or half the image's size is refused, never silently used."""
    image, mask = good_images(1)[0], masks_of(good_images(1))[0]
    resized = in_project / f"resized_mask_{scale}.png"
    pixels = cv2.imread(mask, cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(resized), cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    assert cli.main(["predict", "--dataset", "bus_uc", image, "--mask", str(resized)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    height, width = pixels.shape
    assert captured.err == (
        f"skipped {image}: the mask is {round(width * scale)}x{round(height * scale)} pixels but "
        f"the image is {width}x{height}: a lesion mask must have its image's size\n"
    )


def test_predictions_in_batches_match_one_batch_and_keep_no_inputs(in_project, monkeypatch):
    predictor = predict.Predictor.for_dataset("bus_uc", load())
    images = [UNDECODABLE, *(Path(image) for image in good_images())]
    masks = [(Path(mask),) for mask in masks_of([str(image) for image in images])]
    whole, whole_failures, _ = predictor.predict_files(images, masks)
    monkeypatch.setattr(predict, "BATCH_SIZE", 2)  # several batches, the first with a failure
    batched, failures, inputs = predictor.predict_files(images, masks, keep_inputs=False)
    assert [p.path for p in batched] == [p.path for p in whole] and failures == whole_failures
    assert [p.probability for p in batched] == pytest.approx([p.probability for p in whole], abs=1e-6)
    assert len(inputs) == 0


def test_cli_skips_files_named_as_masks_in_a_busi_folder(in_project, capsys):
    folder = in_project / "busi_style"
    folder.mkdir(exist_ok=True)
    for image in good_images(2):
        stem = Path(image).stem
        shutil.copy(image, folder / f"scan {stem}.png")
        shutil.copy(MASKS / Path(image).name, folder / f"scan {stem}_mask.png")
    status = cli.main(["predict", "--dataset", "bus_uc", "--no-mask", "--jsonl", str(folder)])
    captured = capsys.readouterr()
    assert status == 0
    assert [json.loads(line)["path"] for line in captured.out.splitlines()] == [
        str(folder / "scan 004.png"), str(folder / "scan 005.png")
    ]
    assert f"skipped {folder / 'scan 004_mask.png'}: named as a lesion mask" in captured.err


def test_cli_skips_an_image_over_the_pixel_limit_before_decoding_it(in_project, capsys):
    huge = in_project / "huge.png"
    header = bytearray(Path(good_images(1)[0]).read_bytes())
    header[16:24] = (20000).to_bytes(4, "big") * 2
    huge.write_bytes(bytes(header))
    assert cli.main(["predict", "--dataset", "bus_uc", "--no-mask", str(huge)]) == 1
    assert capsys.readouterr().err.endswith(
        f"skipped {huge}: too large: 20000×20000 pixels (limit 89478485)\n"
    )


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_cli_reads_unicode_names_with_spaces(in_project, capsys, form):
    folder = in_project / unicodedata.normalize(form, "dossier échographies ñ")
    folder.mkdir(exist_ok=True)
    image = folder / unicodedata.normalize(form, "scan é 1.png")
    mask = folder / unicodedata.normalize(form, "masque é 1.png")
    shutil.copy(good_images(1)[0], image)
    shutil.copy(masks_of(good_images(1))[0], mask)
    assert cli.main(["predict", "--dataset", "bus_uc", "--jsonl", str(image), "--mask", str(mask)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(image)


def test_ctrl_c_keeps_the_scored_images_and_ends_with_one_line(project, tmp_path):
    """A real SIGINT while predict waits for an image (a named pipe nobody writes), after its first
    batch was scored: that batch's lines are on stdout, then one error line and exit 130."""
    blocked = tmp_path / "slow.png"
    os.mkfifo(blocked)
    images = good_images(1) * predict.BATCH_SIZE + [str(blocked)]
    command = [sys.executable, "-m", "medcls", "predict", "--dataset", "bus_uc", "--no-mask", "--jsonl", *images]
    environment = command_environment() | {"PYTHONPATH": str(PROJECT)}
    run = subprocess.Popen(command, cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = run.stdout.readline()
    assert json.loads(first)["path"] == good_images(1)[0], run.communicate()
    time.sleep(1)  # the batch is printed; predict now blocks opening the pipe
    run.send_signal(signal.SIGINT)
    rest, stderr = run.stdout.read(), run.stderr.read()  # not communicate(): it skips read-ahead
    assert run.wait(timeout=60) == 130 and "Traceback" not in stderr, stderr
    assert len([first, *rest.splitlines()]) == predict.BATCH_SIZE
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted: the images scored so far")


def test_cli_prints_a_file_name_that_is_not_utf8_as_its_own_bytes(project, tmp_path):
    image = os.fsencode(tmp_path) + b"/caf\xe9.png"  # Latin-1 e-acute
    shutil.copy(project / good_images(1)[0], image)
    command = [sys.executable, "-m", "medcls", "predict", "--dataset", "bus_uc", "--no-mask", image]
    # As on a UTF-8 terminal, where Python's stdout refuses what is not UTF-8.
    environment = command_environment() | {"PYTHONPATH": str(PROJECT), "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run(command, cwd=project, env=environment, capture_output=True)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode()
    assert result.stdout.split(b"\t")[0] == image
