"""Stage external: prepare the other datasets this model is tested on (`evaluate.external`) with
this dataset's image_size and roi params, as TFRecords of one `test` split per other dataset,
beside the table of its rows (every manifest column: the values of its subgroups).

The model saw its inputs cropped and sized by its own params, so the external images must be
prepared the same way, whatever the other dataset's own params say.
"""

import shutil

from medcls.data import external
from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage, workers

SUMMARY = "datasets.json"


def prepare(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    # Imported here, not at the top: spawned workers re-import this module (see stages/roi.py).
    from medcls.images import tfrecords

    images = dataset.evaluate.external_images
    shutil.rmtree(paths.external, ignore_errors=True)
    paths.external.mkdir(parents=True)
    summary = {}
    for other in dataset.evaluate.external:
        other_paths = DatasetPaths(other)
        rows = external.test_images(other_paths.manifest, other_paths.split, images)
        tfrecords.write_tfrecords(
            rows.assign(split="test"),
            other_paths.raw,
            paths.external_records(other),
            images_per_shard=dataset.images_per_shard,
            workers=workers(params),
            roi=dataset.roi,  # margin jitter's wide copies are of trainable splits only: none here
            size=dataset.image_size,
        )
        rows.to_csv(paths.external_images(other), index=False)
        summary[other] = external.describe(rows, images)
        print(f"{name}: external test set {other}: {len(rows)} images ({images})")
    write_json(paths.external / SUMMARY, summary)


if __name__ == "__main__":
    run_stage(prepare)
