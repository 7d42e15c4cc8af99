"""Small TFRecord sets for the benchmarks, made by the library's own manifest, split and roi code,
so a benchmark reads exactly what the train stage reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.common import SEED, SHARED, project_params
from medcls.data.manifest import build_manifest
from medcls.data.splitting import grouped_stratified_split
from medcls.demo import synthetic
from medcls.images.tfrecords import write_tfrecords
from medcls.params import DatasetParams
from medcls.pipeline import stage

BUSI_CLASSES = ["benign", "malignant"]


def busi_source(scratch: Path, images: int) -> Path:
    """../shared's BUSI, or as many BUSI-like generated images (medcls/demo/synthetic.py, 256 x 320 px
    like ../shared's) when ../shared is absent."""
    shared = SHARED / "data" / "busi"
    if shared.is_dir():
        return shared
    print(f"{shared} not found: using generated BUSI-like images")
    return synthetic.make_busi(scratch / "busi", n_per_class=images // 2 + 2, size=256)


def split_rows(raw_dir: Path, layout: str, classes: list[str], images: int | None) -> pd.DataFrame:
    """The manifest of `raw_dir` (at most `images` rows, a seeded sample) with its `split` column."""
    params = project_params()
    rows, _ = build_manifest(raw_dir, layout, classes, workers=stage.workers(params))
    if images and images < len(rows):
        rows = rows.sample(images, random_state=SEED).sort_values("path", ignore_index=True)
    rows["split"] = grouped_stratified_split(rows, params.split.fractions, SEED)
    return rows


def write_records(
    rows: pd.DataFrame, raw_dir: Path, out_dir: Path, dataset: DatasetParams, workers: int
) -> Path:
    """The rows as TFRecords prepared with `dataset`'s image size and ROI params; `out_dir`."""
    write_tfrecords(
        rows,
        raw_dir,
        out_dir,
        images_per_shard=dataset.images_per_shard,
        workers=workers,
        roi=dataset.roi,
        size=dataset.image_size,
    )
    return out_dir
