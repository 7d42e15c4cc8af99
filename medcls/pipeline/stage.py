"""What every stage module shares: its command line, params loading and one-line errors."""

import os
import sqlite3
import sys
from collections.abc import Callable

from medcls.params import DatasetParams, Params, ParamsError, load
from medcls.pipeline.errors import EXPECTED_ERRORS, storage_error
from medcls.pipeline.paths import DatasetPaths

# SQLite's words for a full disk (SQLITE_FULL) and for a write refused by a file-size limit.
SQLITE_NO_SPACE = frozenset({"database or disk is full", "disk I/O error"})


def workers(params: Params) -> int:
    """Worker processes to use: the `workers` param, where 0 means every available core."""
    return params.workers or len(os.sched_getaffinity(0))


StageFunction = Callable[[str, Params, DatasetParams, DatasetPaths], None]


def error_lines(error: Exception) -> str:
    """`error: ...` for each line of the message (a params file may have several problems)."""
    return "\n".join(f"error: {line}" for line in str(error).splitlines())


def run_stage(stage: StageFunction) -> None:
    """Entry point shared by every stage: `python -m stages.<stage> <dataset> [<fold>]`.

    The fold (a cross-validation fold's number, for training) selects that fold's outputs in the
    stage's paths. Params are validated before any work; an expected failure (EXPECTED_ERRORS:
    params, inputs, sources; an output that cannot be written for want of space or permission)
    ends with an `error: ...` line per problem and exit status 1 instead of a traceback.
    """
    arguments = sys.argv[1:]
    if len(arguments) not in (1, 2) or not all(argument.isdigit() for argument in arguments[1:]):
        sys.exit(f"usage: python -m {stage.__module__} <dataset> [<fold number>]")
    name = arguments[0]
    fold = int(arguments[1]) if len(arguments) == 2 else None
    try:
        params = load()
        if fold is not None and fold >= params.split.folds:
            raise ParamsError(f"fold {fold} does not exist: split.folds is {params.split.folds}")
        stage(name, params, params.dataset(name), DatasetPaths(name, fold))
    except EXPECTED_ERRORS as error:
        sys.exit(error_lines(error))
    except OSError as error:
        exit_if_storage_error(error, f"an output of `python -m {stage.__module__} {name}`")
        raise
    except sqlite3.OperationalError as error:  # DVC's state database, opened by DVCLive
        if str(error) not in SQLITE_NO_SPACE:
            raise
        sys.exit(
            f"error: no space left writing DVC's state database ({error}): free space and run "
            "dvc repro again"
        )


def exit_if_storage_error(error: OSError, target: str | None = None) -> None:
    """Exit with the one-line error of a file that cannot be written for want of space or
    permission (`target` names it when the error does not); return for any other OSError."""
    problem = storage_error(error, target)
    if problem is not None:
        sys.exit(error_lines(problem))
