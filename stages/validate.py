"""Stage validate: check the whole params file before any other stage runs.

DVC runs a stage only when its own deps or params changed, so a misspelt key that no stage tracks
(`datasets.bus_uc.trian`, `learning_rate`) would never be seen. This stage is always run
(`always_changed` in dvc.yaml) and every download depends on its output, so an invalid params file
stops every `dvc repro` and `dvc exp run`. The output's content never changes: when valid params
rewrite it, no downstream stage reruns.
"""

import sys
from pathlib import Path

from medcls.params import ParamsError, load
from medcls.pipeline.errors import writing
from medcls.pipeline.stage import error_lines, exit_if_storage_error

VALID_MARKER = Path("data/params.ok")
MARKER_TEXT = "params.yaml passed validation (stages/validate.py); this content never changes.\n"


def main() -> None:
    try:
        load()
    except ParamsError as error:
        sys.exit(error_lines(error))
    try:
        VALID_MARKER.parent.mkdir(parents=True, exist_ok=True)
        with writing(VALID_MARKER):
            VALID_MARKER.write_text(MARKER_TEXT)
    except OSError as error:
        exit_if_storage_error(error)
        raise


if __name__ == "__main__":
    main()
