"""ROI margin jitter: the roi stage adds wide copies of the training images, every split keeps its
records at `margin` byte for byte, and cropping a wide copy gives the image at a smaller margin."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from medcls.data.splitting import cross_validation_folds
from medcls.images.roi import prepare
from medcls.images.tfrecord_reader import read_split
from medcls.images.tfrecords import wide, write_tfrecords
from medcls.params import RoiParams
from medcls.pipeline.paths import DatasetPaths
from medcls.training.augment import margin_crop
from medcls.training.records import TrainingRecords
from tests.support.builders import split_busi

ROOT = Path(__file__).resolve().parents[3]
ROI_PARAMS = dict(use_mask=True, margin=0.1, mask_background=False, keep_aspect=True)
JITTER = 0.2
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> tuple:
    return split_busi(tmp_path_factory.mktemp("busi"))


@pytest.fixture(scope="module")
def written(rows, tmp_path_factory) -> dict[float | None, tuple]:
    """The records without the parameter, with jitter 0 and with JITTER."""
    raw, manifest = rows
    outputs = {}
    for jitter in (None, 0.0, JITTER):
        out = tmp_path_factory.mktemp("records") / "busi"
        options = {} if jitter is None else {"margin_jitter": jitter}
        roi = RoiParams(**ROI_PARAMS, **options)
        counts = write_tfrecords(manifest, raw, out, images_per_shard=3, workers=1, roi=roi, size=32)
        outputs[jitter] = (out, counts)
    return outputs


def shards(folder, split: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob(f"{split}-*.tfrecord"))}


def test_every_split_keeps_its_records_byte_for_byte(written):
    plain, _ = written[None]
    for jitter in (0.0, JITTER):
        for split in SPLITS:
            assert shards(written[jitter][0], split) == shards(plain, split) != {}


def test_only_jitter_adds_wide_copies_of_the_splits_trained_on(rows, written):
    _, manifest = rows
    assert written[0.0][1] == written[None][1] == manifest["split"].value_counts().to_dict()
    out, counts = written[JITTER]
    assert counts == {**written[None][1], "train_wide": counts["train"], "val_wide": counts["val"]}
    assert not list(written[0.0][0].glob("*_wide-*")) and not shards(out, wide("test"))
    for split in ("train", "val"):
        narrow, widened = (list(read_split(out, name)) for name in (split, wide(split)))
        assert [record["id"] for record in narrow] == [record["id"] for record in widened]
        assert any(
            not np.array_equal(one["image"], other["image"])
            for one, other in zip(narrow, widened, strict=True)
        )


def smooth_scan(height: int = 120, width: int = 160) -> np.ndarray:
    """A smooth, asymmetric grey image (resampling changes it little)."""
    y, x = np.mgrid[0:height, 0:width]
    grey = 128 + 60 * np.sin(x / 13.0) * np.cos(y / 17.0) + 0.3 * (x - y)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("keep_aspect", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.3])
def test_a_wide_crop_cropped_to_a_margin_is_the_crop_at_that_margin(keep_aspect, margin):
    """Within resampling tolerance, for a box away from the image border (a square one when
    keep_aspect pads: the padding of a crop is then the same at every margin)."""
    mask = np.zeros((120, 160), np.uint8)
    mask[40:80, 60:100] = 1
    options = dict(use_mask=True, mask_background=False, keep_aspect=keep_aspect)
    widest = 0.3
    wide_crop = prepare(smooth_scan(), mask, roi=RoiParams(margin=widest, **options), size=64)
    cropped = margin_crop(wide_crop[None].astype(np.float32), np.array([margin], np.float32), widest)
    expected = prepare(smooth_scan(), mask, roi=RoiParams(margin=margin, **options), size=64)
    cropped, expected = np.asarray(cropped)[0], expected.astype(np.float32)
    assert np.abs(cropped - expected).mean() < 2.0
    assert np.abs(cropped - expected)[4:-4, 4:-4].max() < 12


def id_and_image(records) -> list[tuple[bytes, bytes]]:
    return [(record["id"].numpy(), record["image"].numpy().tobytes()) for record in records]


def test_training_reads_the_wide_copies_and_the_plain_view_the_margin(
    rows, written, monkeypatch, tmp_path
):
    """The train stage's readers: `wide` gives the copies at margin + jitter, whole split or fold;
    otherwise the records at `margin` (what the cached-features phase and scoring see)."""
    monkeypatch.chdir(tmp_path)
    folder = DatasetPaths("busi")
    out = shutil.copytree(written[JITTER][0], folder.tfrecords)
    read = TrainingRecords.of(folder.tfrecords, folder.split, None).read
    for role in ("train", "val"):
        assert id_and_image(read(role)) == id_and_image(read_split(out, role))
        assert id_and_image(read(role, True)) == id_and_image(read_split(out, wide(role)))
    _, manifest = rows
    folder.split.parent.mkdir(parents=True)
    folds = cross_validation_folds(manifest, manifest["split"], 2, seed=0)
    manifest.assign(fold=folds).to_csv(folder.split, index=False)
    read_fold = TrainingRecords.of(folder.tfrecords, folder.split, 0).read
    wide_copies = dict(id_and_image(read_split(out, wide("train"))))
    wide_copies |= dict(id_and_image(read_split(out, wide("val"))))
    fold_train = id_and_image(read_fold("train", True))
    assert fold_train and all(wide_copies[key] == image for key, image in fold_train)


def test_margin_jitter_needs_the_mask():
    options = {"use_mask": True, "margin": 0.1, "mask_background": False, "keep_aspect": True}
    with pytest.raises(ValidationError, match="margin_jitter needs use_mask: true"):
        RoiParams(**{**options, "use_mask": False}, margin_jitter=0.05)


def test_the_train_stage_augments_the_wide_copies_and_caches_features_of_the_margin(
    rows, written, monkeypatch, tmp_path
):
    """One tiny run of the train stage with margin jitter and cached phase-1 features: the
    augmented batches come from `train_wide` through a margin crop, the plain ones from `train`."""
    from medcls.params import validate
    from medcls.training import inputs
    from stages import train as train_stage
    from tests.support.builders import TINY

    monkeypatch.chdir(tmp_path)
    folder = DatasetPaths("busi")
    shutil.copytree(written[JITTER][0], folder.tfrecords)
    params = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    dataset = params["datasets"]["bus_uc"] | copy.deepcopy(TINY)
    dataset["roi"] = {**ROI_PARAMS, "margin_jitter": JITTER}
    dataset["augment"] = {}
    dataset["train"] |= {
        "epochs": 1,
        "cache_features": True,
        "fine_tune": {"epochs": 0, "patience": 1, "unfreeze_layers": 1},
    }
    params |= {"datasets": {"busi": dataset}, "trained": ["busi"]}
    read = []

    def recording(tfrecord_dir, split, **options):
        augmenter = options.get("augmenter")
        read.append((split, augmenter and [type(layer).__name__ for layer in augmenter.layers]))
        return split_batches(tfrecord_dir, split, **options)

    split_batches = inputs.split_batches
    monkeypatch.setattr(inputs, "split_batches", recording)
    typed = validate(params)
    train_stage.train("busi", typed, typed.trained_dataset("busi"), folder)
    assert sorted(read, key=str) == sorted(
        [("train_wide", ["RandomMarginCrop"]), ("train", None), ("val", None)], key=str
    )
