"""Single cases a reviewer looks at: the images whose decision a change flipped, the model's most
confident errors, and those it decides by a hair (the ones a retrained model is likeliest to flip).

Aggregate metrics say how often; these say which images, so a reviewer can look at them (their
Grad-CAM thumbnails, written by the evaluate stage). Pure functions on predictions tables; no
TensorFlow, as `medcls compare` and `medcls review` run without it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.evaluation.metrics import predict_positive

CHANGED_COLUMNS = [
    "id",
    "label",
    "probability_old",
    "probability_new",
    "decision_old",
    "decision_new",
]


def changed_decisions(
    paired: pd.DataFrame, threshold_new: float, threshold_old: float
) -> pd.DataFrame:
    """The images of `paired` (id, label_new, probability_new, probability_old: one row per image
    both sides predicted) whose decision differs between the sides, each side at its own threshold;
    decisions as 0/1 labels. Largest change of probability first, then by id."""
    decision_new = predict_positive(paired["probability_new"].to_numpy(), threshold_new).astype(int)
    decision_old = predict_positive(paired["probability_old"].to_numpy(), threshold_old).astype(int)
    changed = paired.assign(
        label=paired["label_new"].astype(int), decision_new=decision_new, decision_old=decision_old
    )[decision_new != decision_old]
    change = (changed["probability_new"] - changed["probability_old"]).abs()
    order = np.lexsort((changed["id"].to_numpy(), -change.to_numpy()))
    return changed.iloc[order][CHANGED_COLUMNS].reset_index(drop=True)


def confident_errors(rows: pd.DataFrame, threshold: float, count: int) -> pd.DataFrame:
    """Up to `count` wrongly decided rows (label, probability) with the most confident first: the
    largest probability given to the wrong class, then by id."""
    decided = predict_positive(rows["probability"].to_numpy(), threshold)
    wrong = rows[decided != (rows["label"].to_numpy() == 1)]
    confidence = (wrong["label"] - wrong["probability"]).abs()
    order = np.lexsort((wrong["id"].to_numpy(), -confidence.to_numpy()))
    return wrong.iloc[order[:count]].reset_index(drop=True)


def borderline(rows: pd.DataFrame, threshold: float, count: int) -> pd.DataFrame:
    """The `count` rows whose probability lies closest to the threshold, closest first, then by id."""
    distance = (rows["probability"] - threshold).abs()
    order = np.lexsort((rows["id"].to_numpy(), distance.to_numpy()))
    return rows.iloc[order[:count]].reset_index(drop=True)


def thumbnail_name(image_id: str) -> str:
    """A file name for an image's thumbnail: its id made safe for any file system, plus a short
    hash of the id, as two ids can be alike once made safe (`a b.png`, `a_b.png`)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("._")[-60:]
    return f"{safe}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}.png"


def review_cases(rows: pd.DataFrame, threshold: float, count: int) -> dict:
    """The cases of a scored split (id, label, probability) a reviewer gets thumbnails of: the
    `count` most confident errors and the `count` images closest to the threshold."""
    columns = ["id", "label", "probability"]
    return {
        "confident_errors": confident_errors(rows, threshold, count)[columns].to_dict("records"),
        "borderline": borderline(rows, threshold, count)[columns].to_dict("records"),
    }


def markdown(review: dict, classes: list[str], thumbnails: Path, report_dir: Path) -> list[str]:
    """The cases of `review_cases` as tables with their Grad-CAM thumbnails (in `thumbnails`),
    linked relative to the report's folder `report_dir`."""
    lines = []
    for key, title, why_none in (
        ("confident_errors", "Most confident errors", "no test image is misclassified"),
        ("borderline", "Closest to the threshold", "no test images"),
    ):
        if not review[key]:
            lines += ["", f"{title} (test): none ({why_none})."]
            continue
        lines += [
            "",
            f"{title} (test):",
            "",
            "| image | label | probability | Grad-CAM |",
            "|---|---|---|---|",
        ]
        for case in review[key]:
            link = os.path.relpath(thumbnails / thumbnail_name(case["id"]), report_dir)
            lines.append(
                f"| `{case['id']}` | {classes[int(case['label'])]} | {case['probability']:.3f} "
                f"| ![Grad-CAM of {case['id']}]({Path(link).as_posix()}) |"
            )
    return lines
