"""Small JSON writer shared by the stages: stable, diff-friendly files for `dvc metrics diff`."""

import json
from pathlib import Path


def write_json(path: Path, document: dict) -> None:
    """Write sorted, indented JSON; NaN or infinity is refused, so every file stays valid JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
