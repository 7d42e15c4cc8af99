"""The roi stage's sample figure: images with mask contour and ROI box beside the prepared crops."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcls.images.decode import mask_paths_of, read_image, read_masks
from medcls.images.roi import prepare_file, roi_box
from medcls.pipeline.errors import writing

if TYPE_CHECKING:
    import pandas as pd

    from medcls.params import RoiParams


def draw_roi_samples(
    raw_dir: Path,
    manifest: pd.DataFrame,
    out_png: Path,
    *,
    per_class: int = 4,
    seed: int,
    roi: RoiParams,
    size: int,
) -> None:
    """Save a grid showing, per class, sampled images with their mask contour and ROI box beside the
    prepared model input, so a wrong crop or a flipped channel order is obvious at a glance."""
    from matplotlib.figure import (
        Figure,
    )  # imported here so worker processes never pay for matplotlib

    by_class = [
        rows.sample(n=min(per_class, len(rows)), random_state=seed)
        for _, rows in manifest.groupby("label")
    ]
    figure = Figure(figsize=(4 * len(by_class), 2 * per_class), layout="constrained")
    axes = figure.subplots(per_class, 2 * len(by_class), squeeze=False)
    for column, rows in enumerate(by_class):
        for row_axes, row in itertools.zip_longest(
            axes[:, 2 * column : 2 * column + 2], rows.itertuples()
        ):
            if row is not None:
                _draw_sample(row_axes, raw_dir, row, roi, size)
    for axis in axes.flat:
        axis.set_axis_off()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with writing(out_png):
        figure.savefig(out_png, dpi=100)


def _draw_sample(axes: Sequence[Any], raw_dir: Path, row: Any, roi: RoiParams, size: int) -> None:
    """Draw one manifest row: full image with mask contour and ROI box, then the prepared crop."""
    from matplotlib.patches import Rectangle

    full_axis, prepared_axis = axes
    mask_paths = mask_paths_of(row.mask_paths)
    full_axis.imshow(read_image(raw_dir / row.path))
    full_axis.set_title(f"{row.class_name}: {Path(row.path).name}", fontsize=7)
    if mask_paths:
        mask = read_masks([raw_dir / path for path in mask_paths])
        full_axis.contour(mask, levels=[0.5], colors="yellow", linewidths=0.8)
        if roi.use_mask:
            x0, y0, x1, y1 = roi_box(mask, roi.margin)
            full_axis.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red")
            )
    prepared_axis.imshow(prepare_file(raw_dir, row.path, mask_paths, roi=roi, size=size))
    prepared_axis.set_title(f"{row.class_name}: prepared", fontsize=7)
