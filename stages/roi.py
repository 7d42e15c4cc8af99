"""Stage roi: crop every image to its lesion mask (when the dataset has masks) into sharded TFRecords."""

import pandas as pd

from medcls.images import samples
from medcls.params import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage, workers


def crop(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    # Imported here, not at the top: spawned ROI workers re-import this module as their __main__,
    # and TensorFlow would cost each of them seconds and hundreds of MiB.
    from medcls.images import tfrecords

    rows = pd.read_csv(paths.split, keep_default_na=False)
    options = dict(roi=dataset.roi, size=dataset.image_size)
    counts = tfrecords.write_tfrecords(
        rows,
        paths.raw,
        paths.tfrecords,
        images_per_shard=dataset.images_per_shard,
        workers=workers(params),
        **options,
    )
    paths.plots.mkdir(parents=True, exist_ok=True)
    samples.draw_roi_samples(
        paths.raw, rows, paths.plots / "roi_samples.png", seed=params.seed, **options
    )
    print(f"{name}: TFRecords written per split: {counts}")


if __name__ == "__main__":
    run_stage(crop)
