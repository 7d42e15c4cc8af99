"""TFRecord round trip: shard naming, labels, ids, pixels, identical output for any worker count,
and refusal of partial or damaged output."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medcls.images.decode import mask_paths_of
from medcls.images.roi import prepare_file
from medcls.images.tfrecord_reader import IncompleteRecordsError, read_labels, read_split
from medcls.images.tfrecords import INDEX, write_tfrecords
from medcls.params import RoiParams
from tests.support.builders import split_busi

ROOT = Path(__file__).resolve().parents[3]
ROI = dict(roi=RoiParams(use_mask=True, margin=0.1, mask_background=False, keep_aspect=True), size=32)
PER_SHARD = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return split_busi(tmp_path_factory.mktemp("busi"))


@pytest.fixture(scope="module")
def written(dataset, tmp_path_factory) -> dict[int, tuple[Path, dict[str, int]]]:
    """The same split written in-process and with two worker processes."""
    raw, manifest = dataset
    outputs = {}
    for workers in (1, 2):
        out = tmp_path_factory.mktemp(f"workers{workers}") / "records"
        outputs[workers] = (
            out,
            write_tfrecords(manifest, raw, out, images_per_shard=PER_SHARD, workers=workers, **ROI),
        )
    return outputs


def test_shards_are_named_and_counted_per_split(dataset, written) -> None:
    _, manifest = dataset
    out, counts = written[1]
    assert counts == manifest["split"].value_counts().to_dict()
    expected = {
        f"{split}-{index:05d}-of-{math.ceil(n / PER_SHARD):05d}.tfrecord"
        for split, n in counts.items()
        for index in range(math.ceil(n / PER_SHARD))
    }
    assert {path.name for path in out.iterdir()} == expected | {INDEX}
    index = json.loads((out / INDEX).read_text())
    assert {split: entry["records"] for split, entry in index.items()} == counts
    assert {name for entry in index.values() for name in entry["shards"]} == expected


def test_workers_give_identical_records(written) -> None:
    (serial, _), (parallel, _) = written[1], written[2]
    assert sorted(path.name for path in serial.iterdir()) == sorted(
        path.name for path in parallel.iterdir()
    )
    for path in serial.iterdir():
        assert path.read_bytes() == (parallel / path.name).read_bytes()


def test_another_process_writes_identical_bytes(dataset, written, tmp_path: Path) -> None:
    """Protobuf orders an Example's features differently in each process unless told otherwise;
    identical shards let DVC see that a re-run roi stage changed nothing, so training is not re-run."""
    raw, manifest = dataset
    manifest.to_csv(tmp_path / "split.csv", index=False)
    code = (
        "import sys; from pathlib import Path; import pandas as pd; "
        "from medcls.images.tfrecords import write_tfrecords; "
        "from medcls.params import RoiParams; "
        "rows = pd.read_csv(sys.argv[1], keep_default_na=False); "
        "write_tfrecords(rows, Path(sys.argv[2]), Path(sys.argv[3]), "
        f"images_per_shard={PER_SHARD}, workers=1, "
        f"roi=RoiParams(**{ROI['roi'].model_dump()!r}), size={ROI['size']})"
    )
    out = tmp_path / "records"
    arguments = [str(tmp_path / "split.csv"), str(raw), str(out)]
    subprocess.run([sys.executable, "-c", code, *arguments], check=True, cwd=ROOT)
    in_process, _ = written[1]
    assert sorted(path.name for path in out.iterdir()) == sorted(
        path.name for path in in_process.iterdir()
    )
    for path in in_process.iterdir():
        assert path.read_bytes() == (out / path.name).read_bytes()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_round_trip_keeps_labels_ids_groups_and_pixels(dataset, written, split: str) -> None:
    raw, manifest = dataset
    rows = manifest[manifest["split"] == split].set_index("path")
    split_records = read_split(written[1][0], split)
    records = list(split_records.as_numpy_iterator())
    assert int(split_records.cardinality()) == len(rows) == len(records)
    assert sorted(record["id"].decode() for record in records) == sorted(rows.index)
    for record in records:
        row = rows.loc[record["id"].decode()]
        assert (record["label"], record["group"].decode()) == (row["label"], row["group"])
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        expected = prepare_file(raw, record["id"].decode(), mask_paths_of(row["mask_paths"]), **ROI)
        assert np.array_equal(
            record["image"], expected
        )  # PNG is lossless and channels are not swapped


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_read_labels_gives_the_record_labels_in_order(written, split: str) -> None:
    out, _ = written[1]
    labels = read_labels(out, split)
    assert labels.dtype == np.int64
    assert labels.tolist() == [
        record["label"] for record in read_split(out, split).as_numpy_iterator()
    ]


def test_output_dir_is_recreated(dataset, tmp_path: Path) -> None:
    raw, manifest = dataset
    stale = tmp_path / "records" / "old-00000-of-00001.tfrecord"
    stale.parent.mkdir()
    stale.write_bytes(b"stale")
    write_tfrecords(
        manifest[manifest["split"] == "val"],
        raw,
        stale.parent,
        images_per_shard=100,
        workers=1,
        **ROI,
    )
    assert sorted(path.name for path in tmp_path.rglob("*")) == [
        INDEX, "records", "val-00000-of-00001.tfrecord"
    ]


def test_a_failed_write_keeps_the_previous_output_and_leaves_nothing_else(dataset, written, tmp_path):
    raw, manifest = dataset
    out = tmp_path / "records"
    shutil.copytree(written[1][0], out)
    broken = manifest.assign(path=manifest["path"].where(manifest.index != len(manifest) - 1, "gone.png"))
    with pytest.raises(Exception, match="gone.png"):
        write_tfrecords(broken, raw, out, images_per_shard=PER_SHARD, workers=1, **ROI)
    assert [path.name for path in tmp_path.iterdir()] == ["records"]
    assert len(read_labels(out, "train")) == (manifest["split"] == "train").sum()


def test_missing_split_names_dir_and_split(written) -> None:
    out, _ = written[1]
    with pytest.raises(IncompleteRecordsError, match=f"'holdout' in {out}"):
        read_split(out, "holdout")


def _drop_index(out: Path) -> str:
    (out / INDEX).unlink()
    return "no index.json"


def _drop_last_train_shard(out: Path) -> str:
    max(out.glob("train-*")).unlink()
    return "split 'train' has shards"


def _add_a_stray_shard(out: Path) -> str:
    shutil.copy(min(out.glob("train-*")), out / "train-00000-of-00009.tfrecord")
    return "split 'train' has shards"


def _truncate_a_shard(out: Path) -> str:
    shard = min(out.glob("train-*"))
    shard.write_bytes(shard.read_bytes()[:-20])
    return "unreadable shard"


def _miscount_in_index(out: Path) -> str:
    index = json.loads((out / INDEX).read_text())
    index["train"]["records"] += 1
    (out / INDEX).write_text(json.dumps(index))
    return "split 'train' holds"


@pytest.mark.parametrize(
    "damage",
    [_drop_index, _drop_last_train_shard, _add_a_stray_shard, _truncate_a_shard, _miscount_in_index],
)
@pytest.mark.parametrize("reader", [read_split, read_labels])
def test_partial_or_damaged_output_is_refused(written, tmp_path, damage, reader) -> None:
    out = tmp_path / "busi"
    shutil.copytree(written[1][0], out)
    problem = damage(out)
    with pytest.raises(IncompleteRecordsError) as raised:
        reader(out, "train")
    assert problem in str(raised.value) and "run `dvc repro roi@busi`" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_folder_is_refused(tmp_path) -> None:
    with pytest.raises(IncompleteRecordsError, match="no such folder.*dvc repro roi@busi"):
        read_split(tmp_path / "busi", "train")


def test_damaged_external_records_name_the_external_stage(written, tmp_path) -> None:
    """Another dataset's images prepared for busi's model are written by external@busi, not by
    a roi stage (there is no roi@bus_uclm_dev)."""
    out = tmp_path / "data" / "external" / "busi" / "bus_uclm_dev"
    shutil.copytree(written[1][0], out)
    _truncate_a_shard(out)
    with pytest.raises(IncompleteRecordsError) as raised:
        read_split(out, "train")
    assert "the external stage's output" in str(raised.value)
    assert "run `dvc repro external@busi`" in str(raised.value)


def test_colours_survive_the_round_trip(tmp_path: Path) -> None:
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    rows = pd.DataFrame(
        {
            "path": ["red.png"],
            "mask_paths": [""],
            "label": [1],
            "group": ["g"],
            "sha256": ["h"],
            "split": ["test"],
        }
    )
    write_tfrecords(rows, tmp_path, tmp_path / "records", images_per_shard=1, workers=1, **ROI)
    image = next(read_split(tmp_path / "records", "test").as_numpy_iterator())["image"]
    assert (image[..., 0] == 200).all() and (image[..., 1:] == 0).all()
