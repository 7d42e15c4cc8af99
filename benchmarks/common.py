"""What the benchmark scripts share: paths, the default models, a train-step timer and output.

Backend-agnostic (no TensorFlow import), so `model_step` can run on JAX; the TensorFlow-side data
preparation lives in `benchmarks.data`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np

from medcls.model.classifier import build_classifier, unfreeze_top
from medcls.model.losses import make_loss
from medcls.params import ApplicationBackbone, Backbone, DatasetParams, Params, load

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
SEED = 42


def skip_unless_shared(*parts: str) -> Path:
    """The path under ../shared, or exit 0 with a message when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        print(f"skipped: {path} not found (real data and weights live in ../shared)")
        sys.exit(0)
    return path


def project_params() -> Params:
    return load(PROJECT / "params.yaml")


def default_models(params: Params | None = None) -> dict[str, DatasetParams]:
    """The project's datasets with their backbones' weights set to none: the models' cost without
    downloading ImageNet weights (the architecture, not the weights, sets the speed)."""
    datasets = (params or project_params()).datasets
    return {
        name: dataset.model_copy(update={"backbone": _without_weights(dataset.backbone)})
        for name, dataset in datasets.items()
    }


def _without_weights(backbone: Backbone) -> Backbone:
    if isinstance(backbone, ApplicationBackbone):
        return backbone.model_copy(update={"weights": "none"})
    return backbone


def build_model(dataset: DatasetParams, unfreeze_fraction: float = 0.0) -> keras.Model:
    """The dataset's classifier as the train stage builds it: backbone frozen (phase 1), or with
    the top `unfreeze_fraction` of it trainable (phase 2; 1.0 is training from scratch)."""
    model = build_classifier(dataset.backbone, dataset.head, dataset.image_size, seed=SEED)
    if unfreeze_fraction:
        unfreeze_top(model, fraction=unfreeze_fraction)
    return model


def train_step_rate(
    model: keras.Model, dataset: DatasetParams, *, batch_size: int, steps: int, jit_compile
) -> float:
    """Images per second of `train_on_batch` on random pixels, after one untimed step (tracing
    and compilation). `train_on_batch` returns the loss as a number, so every timed step has
    finished on the device when the clock stops."""
    rng = np.random.default_rng(SEED)
    size = dataset.image_size
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, 2, (batch_size, 1)).astype("float32")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=make_loss(dataset.loss),
        jit_compile=jit_compile,
    )
    model.train_on_batch(images, labels)
    with stopwatch() as elapsed:
        for _ in range(steps):
            model.train_on_batch(images, labels)
    return batch_size * steps / elapsed()


@contextmanager
def stopwatch() -> Iterator:
    """`with stopwatch() as elapsed:` ... `elapsed()` gives the seconds the block took."""
    started = time.perf_counter()
    finished = None

    def elapsed() -> float:
        return (finished or time.perf_counter()) - started

    try:
        yield elapsed
    finally:
        finished = time.perf_counter()


def machine() -> str:
    """The machine in one line, with its load: other processes' work slows every figure."""
    cores = len(os.sched_getaffinity(0))
    load_average = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{_cpu_model()}, {cores} cores, load average {load_average}, "
        f"Keras {keras.__version__} on {keras.backend.backend()}"
    )


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.machine()


def print_table(header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """A Markdown table, ready for benchmarks/README.md."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
