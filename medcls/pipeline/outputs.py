"""Writers shared by the stages: stable, diff-friendly JSON for `dvc metrics diff`, and figures."""

import json
from pathlib import Path

from matplotlib.figure import Figure

from medcls.pipeline.errors import writing


def write_json(path: Path, document: dict) -> None:
    """Write sorted, indented JSON; NaN or infinity is refused, so every file stays valid JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        path.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_figure(figure: Figure, out_png: Path) -> None:
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with writing(out_png):
        figure.savefig(out_png, dpi=120, bbox_inches="tight")
