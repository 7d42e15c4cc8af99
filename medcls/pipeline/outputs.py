"""Writers shared by the stages: stable, diff-friendly JSON for `dvc metrics diff`, and figures.

Each file is written under a temporary name beside it and renamed into place once complete, so a
full disk or an interrupt leaves the previous file or none, never half a file that a later stage
or `dvc metrics` would read.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matplotlib.figure import Figure

from medcls.pipeline.errors import writing


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (in its folder, created if need be) for the block to write;
    renamed onto `path` when the block completes, removed when it fails. An OSError names `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with writing(path):
            yield partial
            partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, document: dict) -> None:
    """Write sorted, indented JSON; NaN or infinity is refused, so every file stays valid JSON."""
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with written_atomically(path) as partial:
        partial.write_text(text)


def save_figure(figure: Figure, out_png: Path) -> None:
    with written_atomically(out_png) as partial:
        figure.savefig(partial, dpi=120, bbox_inches="tight", format="png")
