"""Builders shared by the tests that run stages or `dvc repro`: the project's own params.yaml shrunk
to tiny datasets (so a change to the real params schema is exercised too), a one-dataset project with
its TFRecords as the roi stage writes them, and a committed workspace after its first `dvc repro`.

Imported as `from tests.support.builders import ...`; plain functions, so a module-scoped fixture can call them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from medcls.data.manifest import build_manifest
from medcls.data.splitting import grouped_stratified_split
from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, create_workspace, run_in
from medcls.images.tfrecords import write_tfrecords
from medcls.params import AugmentParams, RoiParams
from medcls.pipeline.paths import DatasetPaths

# The bytes of a file that claims to be an image and is not
NOT_AN_IMAGE = b"this is not an image\n"

# Every dataset's params shrunk: 32 px, a small CNN with both head blocks, an epoch or two.
TINY = {
    "image_size": 32,
    "images_per_shard": 8,
    "backbone": {"name": "small_cnn", "filters": [8, 16]},
    "head": {
        "blocks": [
            {"pdf": {"filters": 8, "kernel_sizes": [1, 3], "dilation_rates": [1, 2], "reduce_to": None, "separable": False}},
            {"se": {"ratio": 4}},
        ],
        "pooling": "gap",
        "dense_units": 8,
        "dropout": 0.1,
    },
    "train": {
        "batch_size": 8,
        "epochs": 2,
        "patience": 2,
        "fine_tune": {"epochs": 1, "patience": 1, "unfreeze_layers": 1},
        "mixed_precision": "auto",
        "jit_compile": False,
    },
    "evaluate": {"threshold": "youden", "bootstrap": 50, "baseline": True},
}
NAME = "demo"  # the one dataset of one_dataset_params
# How the roi stage prepares one_dataset_params' images (no masks: chest X-rays).
ROI = dict(
    roi=RoiParams(use_mask=False, margin=0.0, mask_background=False, keep_aspect=False),
    size=TINY["image_size"],
)


# Every augmentation that existed before the ultrasound ones, switched on.
EVERY_AUGMENTATION = AugmentParams(
    flip_horizontal=True,
    flip_vertical=True,
    rotation=20,
    shift=0.2,
    shear=0.2,
    zoom=0.2,
    brightness=[0.7, 1.3],
    contrast=0.2,
    saturation=0.2,
    channel_shift=20,
)


def split_busi(folder: Path) -> tuple[Path, pd.DataFrame]:
    """Generated BUSI images (8 a class, with masks) in `folder` and their split manifest."""
    raw = synthetic.make_busi(folder, n_per_class=8)
    manifest, _ = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)
    manifest["split"] = grouped_stratified_split(
        manifest, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0
    )
    return raw, manifest


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def project_params() -> dict:
    """The project's params.yaml, as plain data."""
    return YAML(typ="safe", pure=True).load((PROJECT / "params.yaml").read_text())


def one_dataset_params(name: str = NAME, **dataset_changes) -> dict:
    """The project's params with one tiny chest X-ray dataset `name`, changed as given; one worker."""
    params = project_params()
    dataset = params["datasets"]["chest_xray"] | copy.deepcopy(TINY) | dataset_changes
    return params | {"workers": 1, "datasets": {name: dataset}, "trained": [name]}


# A small generated source for each dataset of the project's params.yaml, in its layout.
GENERATORS = {
    "bus_uc": lambda folder: synthetic.make_bus_uc(folder, n_per_class=16, size=64),
    "busi": lambda folder: synthetic.make_busi(folder, n_per_class=16, size=64),
    "chest_xray": lambda folder: synthetic.make_kermany(folder, n_patients_per_class=10, size=64),
}


def generate_sources(root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """A small generated source for each of `names` under `root`/sources."""
    return {name: GENERATORS[name](root / "sources" / name) for name in names}


def tiny_pipeline_params(sources: Mapping[str, Path]) -> dict:
    """The project's params.yaml with a trained tiny dataset for each entry of `sources` (bus_uc,
    busi: the bus_uc params in BUSI's layout, chest_xray), pointed at its source."""
    params = project_params()
    breast = params["datasets"]["bus_uc"]
    busi = copy.deepcopy(breast) | {"layout": "busi", "classes": synthetic.BUSI_CLASSES}
    available = {"bus_uc": breast, "busi": busi, "chest_xray": params["datasets"]["chest_xray"]}
    params["datasets"] = {name: available[name] for name in sources}
    params["trained"] = list(sources)
    for name, dataset in params["datasets"].items():
        dataset.update(copy.deepcopy(TINY), source=str(sources[name]))
    params["workers"] = 2
    return params


def write_params(folder: Path, params: Mapping) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)


def make_project(folder: Path, params: Mapping, images_per_shard: int = 8) -> Path:
    """`folder` with `params` and, for its dataset NAME, the TFRecords of generated chest X-rays
    (8 patients a class, 2 images each, 32 px) as the roi stage writes them."""
    write_params(folder, params)
    raw = synthetic.make_kermany(folder / "raw", n_patients_per_class=8, images_per_patient=2, size=32)
    rows, rejected = build_manifest(raw, "kermany", synthetic.KERMANY_CLASSES, workers=1)
    rows["split"] = grouped_stratified_split(rows, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    paths = DatasetPaths(NAME)
    write_tfrecords(rows, raw, folder / paths.tfrecords, images_per_shard=images_per_shard, workers=1, **ROI)
    # what the source, manifest and split stages leave for evaluate's model card
    for path, frame in ((paths.split, rows), (paths.rejected, rejected)):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / path, index=False)
    record = folder / paths.source_record("fetch")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({NAME: {"source": str(raw)}}))
    return folder


def reproduced_workspace(root: Path, params: Mapping, *targets: str) -> Path:
    """A committed workspace `root`/repo after `dvc repro [targets]`, also committed; the repro's
    output is kept in `root`/first_repro.log for the tests that check what it ran."""
    repo = create_workspace(root / "repo", params, message="project")
    (root / "first_repro.log").write_text(run_in(repo, "dvc", "repro", *targets))
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", "first run")
    return repo


def first_repro_stages(repo: Path) -> set[str]:
    """The stages reproduced_workspace's `dvc repro` ran."""
    return stages_run((repo.parent / "first_repro.log").read_text())
