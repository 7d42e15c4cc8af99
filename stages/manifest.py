"""Stage manifest: one CSV row per usable image, every unused file listed with its reason."""

from medcls.data import manifest
from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import write_json, written_atomically
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage, workers


def build(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    readings = {
        source_name: manifest.SourceReading(source.folder, source.layout, source.classes)
        for source_name, source in dataset.named_sources.items()
    }
    rows, rejected = manifest.build_sources_manifest(
        paths.raw, readings, dataset.classes, workers=workers(params),
        max_pixels=params.max_image_pixels,
    )
    with written_atomically(paths.rejected) as partial:
        rejected.to_csv(partial, index=False)
    write_json(paths.summary("manifest"), manifest.summarize(rows, rejected))
    paths.manifest.unlink(missing_ok=True)  # never leave an older manifest beside these rejects
    manifest.check_both_classes(rows, dataset.classes, paths.rejected)
    with written_atomically(paths.manifest) as partial:
        rows.to_csv(partial, index=False)
    print(f"{name}: {len(rows)} images, {len(rejected)} rejected (see {paths.rejected})")


if __name__ == "__main__":
    run_stage(build)
