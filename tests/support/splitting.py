"""A generated manifest with grouped, partly duplicated images, shared by the splitting tests."""

import numpy as np
import pandas as pd

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def synthetic_manifest(n_groups: int = 400, seed: int = 1) -> pd.DataFrame:
    """Groups of 1-4 images, 30 % positive, with a few identical images shared between groups."""
    rng = np.random.default_rng(seed)
    sizes, labels = rng.integers(1, 5, n_groups), (rng.random(n_groups) < 0.3).astype(int)
    rows = pd.DataFrame(
        {
            "group": np.repeat([f"g{i}" for i in range(n_groups)], sizes),
            "label": np.repeat(labels, sizes),
        }
    )
    rows["path"] = [f"img{i:05d}.png" for i in range(len(rows))]
    rows["class_name"] = np.where(rows["label"] == 1, "pos", "neg")
    rows["sha256"] = rows["path"]
    for label in (0, 1):
        index = rows.index[rows["label"] == label]
        for original, copy in [(0, -1), (5, 50)]:
            rows.loc[index[copy], "sha256"] = rows.loc[index[original], "sha256"]
    return rows
