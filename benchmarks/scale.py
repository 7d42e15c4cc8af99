"""Scale: the pipeline on synthetic sets of 10,000 to 100,000 images, stage by stage.

For each size, a Kermany-layout set of small chest X-rays (`--px`, 64 by default; every image
unique: a pool of generated images, each copy stamped with its number) goes through the real
stages, each in a fresh process in a throw-away project: manifest, split, roi, one epoch of the
training input pipeline (augmented, streamed from the shards: `memory_fraction: 0`; and cached in
RAM), the train stage for one epoch of a small CNN (streamed), and evaluate (1000 bootstrap
resamples, no baseline). Per stage: seconds per 10,000 images (the stage's work, imports excluded)
and peak RSS of the process; and the TFRecords' disk use per image.

Targets: seconds per image within 1.3x from the smallest size to the largest, peak RSS
of every stage at the largest size within 1.5x of the smallest.

    python -m benchmarks.scale [--sizes 10000 50000 100000] [--px 64] [--keep DIR]

The 100,000 size writes about 100,000 small JPEGs and 0.5 GB of TFRecords; it takes tens of
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from ruamel.yaml import YAML

from benchmarks.common import PROJECT, SEED, machine, print_table, stopwatch
from medcls.demo.synthetic import KERMANY_CLASSES, KERMANY_ROOT, _chest
from medcls.pipeline.paths import DatasetPaths

NAME = "synthetic"
PATHS = DatasetPaths(NAME)
POOL = 256  # generated images per class; the others are stamped copies

# Imports first (not timed), then the measured work, then its seconds and the process's peak RSS.
MEASURED = """\
import json, resource, runpy, sys, time
import keras, pandas, sklearn, tensorflow, medcls.training.inputs
started = time.perf_counter()
{work}
print("MEASURED", json.dumps({{"seconds": time.perf_counter() - started,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
STAGE = 'sys.argv = ["{stage}", "{name}"]\nrunpy.run_module("stages.{stage}", run_name="__main__")'
INPUT_EPOCH = """\
from medcls.params import load
from medcls.training import augment, inputs
dataset = load().dataset("{name}")
batches = inputs.split_batches(
    "{tfrecords}", "train", batch_size=64, image_size=dataset.image_size, budget={budget},
    augmenter=augment.build_augmenter(dataset.augment, 0), shuffle=True, seed=0)
for images, labels in batches:
    pass
"""

# What the stages measured here read; small model, one epoch, streamed input.
DATASET = {
    "source": "unused",  # the download stage is not run: the images are written to data/raw
    "layout": "kermany",
    "classes": KERMANY_CLASSES,
    "images_per_shard": 1024,
    "roi": {"use_mask": False, "margin": 0.0, "mask_background": False, "keep_aspect": False},
    "backbone": {"name": "small_cnn", "filters": [8, 16]},
    "head": {"blocks": [], "pooling": "gap", "dense_units": 8, "dropout": 0.0},
    "loss": {"name": "bce"},
    "class_weight": "balanced",
    "augment": {"flip_horizontal": True, "brightness": [0.9, 1.1]},
    "train": {
        "batch_size": 64,
        "epochs": 1,
        "patience": 1,
        "fine_tune": {"epochs": 0, "patience": 1, "unfreeze_layers": 1},
        "mixed_precision": "float32",
        "jit_compile": False,
        "memory_fraction": 0.0,
    },
    "evaluate": {"threshold": "youden", "bootstrap": 1000, "baseline": False},
}


def write_images(raw: Path, count: int, px: int) -> None:
    """`count` unique JPEGs in Kermany's layout, two per patient, half of them pneumonia."""
    rng = np.random.default_rng(SEED)
    pools = {name: [_chest(rng, px, name == "PNEUMONIA") for _ in range(POOL)] for name in KERMANY_CLASSES}
    for number in range(count):
        class_name = KERMANY_CLASSES[number % 2]
        patient = number // 4
        image = pools[class_name][number % POOL].copy()
        image[0, :4] = np.frombuffer(number.to_bytes(4, "little"), np.uint8)  # unique bytes
        folder = raw / KERMANY_ROOT / "train" / class_name
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            f"person{patient}_bacteria_{number}.jpeg"
            if class_name == "PNEUMONIA"
            else f"IM-{patient:06d}-{number % 4:04d}.jpeg"
        )
        (folder / name).write_bytes(cv2.imencode(".jpeg", image)[1].tobytes())


def make_project(folder: Path, count: int, px: int) -> None:
    params = YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())
    params["datasets"] = {NAME: DATASET | {"image_size": px}}
    params["trained"] = [NAME]
    folder.mkdir(parents=True)
    with (folder / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)
    write_images(folder / PATHS.raw, count, px)


def measure(folder: Path, work: str) -> dict:
    env = {"PYTHONPATH": str(PROJECT), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [sys.executable, "-c", MEASURED.format(work=work)],
        cwd=folder, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-3000:] + result.stderr[-3000:])
    line = next(line for line in result.stdout.splitlines() if line.startswith("MEASURED "))
    return json.loads(line.removeprefix("MEASURED "))


def measure_size(folder: Path, count: int, px: int) -> tuple[dict[str, dict], float, float]:
    """Per stage: seconds and peak RSS; the seconds to generate the images; TFRecord bytes per image."""
    with stopwatch() as generation:
        make_project(folder, count, px)
    results = {}
    for stage in ("manifest", "split", "roi"):
        results[stage] = measure(folder, STAGE.format(stage=stage, name=NAME))
    records = sum(path.stat().st_size for path in (folder / PATHS.tfrecords).iterdir())
    for label, budget in (("input epoch, streamed", 0), ("input epoch, cached", "float('inf')")):
        work = INPUT_EPOCH.format(name=NAME, tfrecords=PATHS.tfrecords, budget=budget)
        results[label] = measure(folder, work)
    for stage in ("train", "evaluate"):
        results[stage] = measure(folder, STAGE.format(stage=stage, name=NAME))
    return results, generation(), records / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--keep", type=Path, help="make the projects here and keep them")
    args = parser.parse_args()
    print(machine())
    by_size, disk = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for count in args.sizes:
            by_size[count], generated, disk[count] = measure_size(root / f"n{count}", count, args.px)
            print(f"{count} images generated in {generated:.0f} s", flush=True)
    smallest, largest = min(args.sizes), max(args.sizes)
    header = ["stage"]
    for count in args.sizes:
        header += [f"s / 10k @ {count}", f"peak MiB @ {count}"]
    header += [f"time/image {largest} vs {smallest}", f"peak RSS {largest} vs {smallest}"]
    rows = []
    for stage in by_size[smallest]:
        row = [stage]
        for count in args.sizes:
            result = by_size[count][stage]
            row += [result["seconds"] * 10_000 / count, result["peak_mib"]]
        first, last = by_size[smallest][stage], by_size[largest][stage]
        per_image = (last["seconds"] / largest) / (first["seconds"] / smallest)
        row += [f"{per_image:.2f}x", f"{last['peak_mib'] / first['peak_mib']:.2f}x"]
        rows.append(row)
    print_table(header, rows)
    print_table(
        ["images", "TFRecord KiB per image"],
        [[count, disk[count] / 1024] for count in args.sizes],
    )


if __name__ == "__main__":
    main()
