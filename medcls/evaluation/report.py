"""The Markdown review report `reports/<name>.md`: the evaluation document's sections, in the order
of `sections.SECTIONS`, as tables, plus its figures.

Everything in it is read from the metrics document the evaluate stage wrote, so the report cannot
disagree with `metrics/<name>.json`; it only lays the numbers out for a reviewer (GitHub renders it,
figures included, as they are linked relative to the report).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from medcls.evaluation import sections
from medcls.evaluation.tables import confusion_table


def _tta_text(document: Mapping) -> str:
    if not document.get("tta"):
        return ""
    return (
        " The model's probability of an image is the mean over the image and its views "
        f"{', '.join(document['tta'])} (test-time augmentation; Grad-CAM explains the plain image)."
    )


def _header(document: Mapping, classes: Sequence[str], name: str) -> list[str]:
    return [
        f"# {name}: evaluation report",
        "",
        f"Written by the evaluate stage from `reports/{name}.json`. Threshold "
        f"{document['threshold']:.3f} ({document.get('threshold_rule', 'rule not recorded')}), chosen on val and applied "
        "as is to test. AUC and accuracy show their 95 % bootstrap interval in parentheses; "
        f"positive class: {classes[1]}.{_tta_text(document)}",
        "",
    ]


def _figures(name: str, figures: Sequence[Path], out_md: Path) -> list[str]:
    lines = [
        "",
        "## Figures",
        "",
        "ROC, precision-recall and calibration of every split, and the confusion matrix: "
        f"`dvc plots show` (data in `plots/{name}/`).",
    ]
    if figures:
        lines += [""]
        lines += [
            f"![{Path(figure).stem}]({Path(os.path.relpath(figure, out_md.parent)).as_posix()})"
            for figure in figures
        ]
    return lines


def write_report(
    document: Mapping,
    classes: Sequence[str],
    name: str,
    out_md: Path,
    figures: Sequence[Path],
    cases: Path | None = None,
) -> None:
    """Write the report for dataset `name`; `figures` (existing PNGs) are linked relative to it,
    and so are the thumbnails of the document's single cases in the folder `cases`."""
    missing = [str(figure) for figure in figures if not Path(figure).is_file()]
    if missing:
        raise FileNotFoundError(f"report {out_md}: figures not found: {', '.join(missing)}")
    if len(classes) != 2:
        raise ValueError(f"need [negative, positive] class names; got {list(classes)}")
    lines = _header(document, classes, name)
    page = sections.Page(classes=list(classes), out_md=out_md, cases=cases)
    for section in sections.SECTIONS:
        if section.key in document:
            lines += section.show(document, page)
    lines += [
        f"## Confusion matrix (test, threshold {document['threshold']:.3f})",
        "",
        *confusion_table(document["test"], classes),
        *_figures(name, figures, out_md),
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines) + "\n")
