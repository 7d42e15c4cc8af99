"""Expected failures: bad params, bad or missing inputs, an unreachable source, a full disk or a
read-only workspace.

Each is the user's to fix, so the stages and `medcls predict` print its message as one
`error: ...` line and exit non-zero; any other exception is a bug and keeps its traceback.
"""

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medcls.params import ParamsError

# A full disk, a file-size limit (`ulimit -f`) or a quota: the same remedy.
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM})


class PipelineError(Exception):
    """A failure the user can fix; the message says what is wrong and what to do."""


def storage_error(error: OSError, target: str | None = None) -> PipelineError | None:
    """The one-line error for a file that could not be written for want of space, on a read-only
    file system, or could not be read or written for want of permission (`target` names it when
    the OSError does not); None for any other OSError."""
    target = error.filename or target
    if error.errno in NO_SPACE:
        return PipelineError(
            f"no space left writing {target} ({error.strerror}): free space and run dvc repro again"
        )
    if error.errno == errno.EROFS:
        return PipelineError(
            f"cannot write {target} ({error.strerror}): the workspace must be writable; make it "
            "so and run dvc repro again"
        )
    if error.errno in NO_PERMISSION:
        return PipelineError(
            f"{target}: {error.strerror}; the source must be readable and the workspace writable "
            "by this user: change that and run dvc repro again"
        )
    return None


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name `path` in an OSError raised while writing it: a failed write() (disk full, file too
    large) names no file, and the error line must say which one."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


class MissingClassError(PipelineError, ValueError):
    """A split that holds one class only, where training or evaluation needs both."""


# What the stages and `medcls predict` report as one `error: ...` line each: the user's to fix
EXPECTED_ERRORS = (PipelineError, ParamsError, FileNotFoundError)
