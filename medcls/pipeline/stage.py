"""What every stage module shares: its command line, params loading and one-line errors."""

import os
import sys
from collections.abc import Callable

from medcls.pipeline.config import DatasetParams, Params, load
from medcls.pipeline.errors import PipelineError
from medcls.pipeline.paths import DatasetPaths


def workers(params: Params) -> int:
    """Worker processes to use: the `workers` param, where 0 means every available core."""
    return params.workers or len(os.sched_getaffinity(0))


StageFunction = Callable[[str, Params, DatasetParams, DatasetPaths], None]


def error_lines(error: Exception) -> str:
    """`error: ...` for each line of the message (a params file may have several problems)."""
    return "\n".join(f"error: {line}" for line in str(error).splitlines())


def run_stage(stage: StageFunction) -> None:
    """Entry point shared by every stage: `python -m stages.<stage> <dataset>`.

    Params are validated before any work; an expected failure (a PipelineError: params, inputs,
    sources) ends with an `error: ...` line per problem and exit status 1 instead of a traceback.
    """
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {stage.__module__} <dataset>")
    name = sys.argv[1]
    try:
        params = load()
        stage(name, params, params.dataset(name), DatasetPaths(name))
    except (PipelineError, FileNotFoundError) as error:
        sys.exit(error_lines(error))
