"""Stage source: fingerprint the dataset's sources so that a changed local copy re-runs download,
and record what the later data stages read.

DVC runs this stage on every `dvc repro` (always_changed): only a running stage can notice a change
outside the workspace. Its outputs in `data/sources/<name>/` are deps of the data stages
(dvc.yaml): download depends on `fetch.json` (each source with its fingerprint), manifest on
`read.json` (each source's folder, layout and classes), split on `hold_out.json`. They hold the
sources as params loading names them (`DataParams.named_sources`), one form whether params.yaml
gives one source (`source` + `layout`) or several (`sources`), which DVC could not track in
params.yaml itself (it refuses a tracked key that is missing). They are files, not params files,
so that fingerprints stay out of `dvc exp show`'s params columns. A download whose result is
identical leaves every later stage cached.
"""

import json
import sys

from medcls.data import sources
from medcls.params import DatasetParams, Params, Source
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def record(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    recorded = _recorded(paths)
    named = dataset.named_sources
    parts = {
        "fetch": {
            source_name: _fingerprint(source, recorded.get(source_name), paths)
            for source_name, source in named.items()
        },
        "read": {source_name: _reading(source) for source_name, source in named.items()},
        "hold_out": [source_name for source_name, source in named.items() if source.hold_out],
    }
    # not outputs.write_json: this stage runs on every repro and must not pay for importing matplotlib
    for part, value in parts.items():
        path = paths.source_record(part)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _fingerprint(source: Source, recorded: dict | None, paths: DatasetPaths) -> dict:
    """The source's fingerprint; for a local source gone from this machine, the one recorded when
    data/raw was fetched from it (e.g. pulled from a DVC remote since)."""
    if warning := sources.unpinned_kaggle_warning(source.source):
        print(warning, file=sys.stderr)
    try:
        return sources.fingerprint(source.source)
    except FileNotFoundError:
        if not recorded or recorded.get("source") != source.source:
            raise
        print(
            f"warning: {source.name}: source {source.source!r} not found here; keeping {paths.raw} as "
            "fetched from it earlier (e.g. pulled from a DVC remote)",
            file=sys.stderr,
        )
        return recorded


def _reading(source: Source) -> dict:
    layout = source.layout if isinstance(source.layout, str) else source.layout.model_dump()
    return {"folder": source.folder, "layout": layout, "classes": source.classes}


def _recorded(paths: DatasetPaths) -> dict:
    """The fingerprints kept from the last run (the output persists), by source name."""
    record_file = paths.source_record("fetch")
    return json.loads(record_file.read_text()) if record_file.is_file() else {}


if __name__ == "__main__":
    run_stage(record)
