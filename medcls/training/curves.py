"""The train stage's learning-curve figure, drawn from DVCLive's per-epoch .tsv files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from medcls.pipeline.outputs import save_figure


def _read_dvclive_series(metrics_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """{metric: {split: frame}} from DVCLive's `<split>/<metric>.tsv` files (columns step, <metric>)."""
    paths = sorted(metrics_dir.rglob("*.tsv"))
    if not paths:
        raise FileNotFoundError(
            f"no DVCLive .tsv files under {metrics_dir}; did training log with DVCLive?"
        )
    series: dict[str, dict[str, pd.DataFrame]] = defaultdict(dict)
    for path in paths:
        frame = pd.read_csv(path, sep="\t")
        if not {"step", path.stem} <= set(frame.columns):
            raise ValueError(
                f"{path}: expected columns step and {path.stem}, found {list(frame.columns)}"
            )
        split = path.parent.name if path.parent != metrics_dir else path.stem
        series[path.stem][split] = frame
    return series


def save_training_curves_png(metrics_dir: Path, out_png: Path) -> None:
    """One panel per logged metric (loss first), one line per split, against the training step."""
    series = _read_dvclive_series(metrics_dir)
    names = sorted(series, key=lambda name: (name != "loss", name))
    figure = Figure(figsize=(5 * len(names), 4))
    for axis, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names):
        for split, frame in sorted(series[name].items()):
            axis.plot(frame["step"], frame[name], label=split)
        axis.set(xlabel="step", ylabel=name, title=name)
        axis.legend()
    save_figure(figure, out_png)
