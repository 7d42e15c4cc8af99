"""The images of another dataset that a model is tested on (`evaluate.external`).

They come from the other dataset's own manifest (every usable image) or its split (the test rows),
so its download, layout and leakage rules apply unchanged; classes are matched by label (0/1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def test_images(manifest: Path, split: Path, images: str) -> pd.DataFrame:
    """Rows of the other dataset to test on: `all` its usable images (its manifest), or the `test`
    rows of its split table."""
    if images == "all":
        return pd.read_csv(manifest, keep_default_na=False)
    rows = pd.read_csv(split, keep_default_na=False)
    return rows[rows["split"] == "test"].reset_index(drop=True)


def describe(rows: pd.DataFrame, images: str) -> dict:
    """What the external test set holds, for the stage's summary file."""
    classes = rows.groupby("label")["class_name"].first()
    return {
        "images": images,
        "count": len(rows),
        "groups": int(rows["group"].nunique()),
        "per_label": {str(label): int(n) for label, n in rows["label"].value_counts().sort_index().items()},
        "classes": [str(classes.get(label, "")) for label in (0, 1)],
    }
