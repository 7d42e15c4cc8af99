"""What every stage module shares: its command line, params loading and one-line errors."""

import os
import sys
from collections.abc import Callable, Mapping

from medcls.pipeline.config import ParamsError, load
from medcls.pipeline.paths import DatasetPaths


def workers(params: Mapping) -> int:
    """Worker processes to use: the `workers` param, where 0 means every available core."""
    return params["workers"] or len(os.sched_getaffinity(0))


StageFunction = Callable[[str, dict, dict, DatasetPaths], None]


def run_stage(stage: StageFunction) -> None:
    """Entry point shared by every stage: `python -m stages.<stage> <dataset>`.

    Params are validated before any work; a params or input problem ends with a one-line
    message and exit status 1 instead of a traceback.
    """
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {stage.__module__} <dataset>")
    name = sys.argv[1]
    try:
        params = load()
        if name not in params["datasets"]:
            raise ParamsError(
                f"datasets.{name}: no such dataset; defined: {', '.join(params['datasets'])}"
            )
        stage(name, params, params["datasets"][name], DatasetPaths(name))
    except (ParamsError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
