"""Stage source: fingerprint the dataset's source so that a changed local copy re-runs download.

DVC runs this stage on every `dvc repro` (always_changed): only a running stage can notice a change
outside the workspace. download depends on the fingerprint, so it re-runs only when the fingerprint
changes, and a download whose result is identical leaves every later stage cached.
"""

import json
import sys

from medcls.data import sources
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def record(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    source = dataset.source
    if warning := sources.unpinned_kaggle_warning(source):
        print(warning, file=sys.stderr)
    try:
        fingerprint = sources.fingerprint(source)
    except FileNotFoundError:
        if not _recorded_for(paths, source):
            raise
        print(
            f"warning: {name}: source {source!r} not found here; keeping {paths.raw} as fetched "
            "from it earlier (e.g. pulled from a DVC remote)",
            file=sys.stderr,
        )
        return
    # not outputs.write_json: this stage runs on every repro and must not pay for importing matplotlib
    paths.source_fingerprint.parent.mkdir(parents=True, exist_ok=True)
    paths.source_fingerprint.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def _recorded_for(paths: DatasetPaths, source: str) -> bool:
    """Whether the fingerprint kept from the last run (the output persists) is of this source."""
    record_file = paths.source_fingerprint
    return record_file.is_file() and json.loads(record_file.read_text()).get("source") == source


if __name__ == "__main__":
    run_stage(record)
