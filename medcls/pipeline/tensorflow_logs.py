"""TensorFlow's log lines, filtered: its start-up chatter stays out of the pipeline's output, its
errors do not; MEDCLS_VERBOSE=1 shows everything.

Importing TensorFlow prints a dozen lines (oneDNN, CUDA drivers not found, CPU features, failed
cuInit) that bury a stage's own output. TF_CPP_MIN_LOG_LEVEL=2 hides most, but not those that
XLA's libraries log through absl before it is initialised (TensorFlow 2.20 offers no setting for
them), so TensorFlow's import and first device query run with the process's stderr captured, and
every captured line but that chatter is written back. An error line (`E0000 ...`) is kept unless it
is about CUDA, which a machine without a GPU always reports.

A process installs the filter by calling `filter_tensorflow_logs` before it imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

VERBOSE = "MEDCLS_VERBOSE"
START_UP_CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} "  # absl-format info and warning lines
    r"|E\d{4} .*(cuInit|cuda)"  # "failed call to cuInit" and kin: no GPU, the normal CPU case
)


def filter_tensorflow_logs() -> None:
    """Filter TensorFlow's log lines in this process unless MEDCLS_VERBOSE is set (not 0); to call
    before TensorFlow is imported (after, it does nothing). A TF_CPP_MIN_LOG_LEVEL the user set is
    kept."""
    if os.environ.get(VERBOSE, "0") not in ("", "0") or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not any(isinstance(finder, _QuietImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture what this process (C++ libraries included) writes to stderr, then write back all
    but TensorFlow's chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not START_UP_CHATTER.match(line)))
            sys.stderr.flush()


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it makes the first import of `tensorflow` run inside
    `filtered_stderr`, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):  # anything else (resources, source) from the real loader
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices("GPU")  # CUDA's own start-up lines come here
