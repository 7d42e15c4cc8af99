"""Model-step throughput: images/s of each default model's frozen-phase train step on random data,
in float32 and mixed precision, without and with XLA, on whichever Keras backend is selected.

    python -m benchmarks.model_step [--steps 5] [--batch-size N] [--models bus_uc chest_xray]
    python -m benchmarks.model_step --unfreeze 1.0     # the whole backbone trains (fine-tuning)
    KERAS_BACKEND=jax python -m benchmarks.model_step

The default models are the project's params (bus_uc: EfficientNetB0 + PDF/SE head at 224 px;
chest_xray: VGG16 at 150 px) with untrained backbones. Mixed precision is mixed_float16, what
`mixed_precision: auto` picks on a GPU; the sigmoid output must stay float32 and is checked.
Nothing here imports TensorFlow, so on JAX it is never loaded (the last line says so).
"""

from __future__ import annotations

import argparse
import itertools
import sys

import keras
import numpy as np

from benchmarks.common import (
    build_model,
    default_models,
    machine,
    print_table,
    train_step_rate,
)
from medcls.params import DatasetParams

POLICIES = ("float32", "mixed_float16")
JIT = (False, True)


def measure(
    dataset: DatasetParams,
    policy: str,
    jit_compile: bool,
    *,
    batch_size: int,
    steps: int,
    unfreeze: float,
):
    """(images/s, output dtype) of one model under one precision policy and XLA choice."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(dataset, unfreeze)
        size = dataset.image_size
        output = model(np.zeros((1, size, size, 3), "float32"), training=False)
        dtype = keras.backend.standardize_dtype(output.dtype)
        if dtype != "float32":
            raise AssertionError(f"{policy}: the probability is {dtype}, it must stay float32")
        rate = train_step_rate(
            model, dataset, batch_size=batch_size, steps=steps, jit_compile=jit_compile
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return rate, dtype


def main() -> None:
    models = default_models()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(models), default=sorted(models))
    parser.add_argument("--steps", type=int, default=5, help="timed train steps per setting")
    parser.add_argument("--batch-size", type=int, help="default: each dataset's train.batch_size")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument(
        "--unfreeze",
        type=float,
        default=0.0,
        help="fraction of the backbone to train (0: frozen, phase 1; 1.0: from scratch)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; devices: {keras.distribution.list_devices()}")
    print(f"backbone fraction trained: {args.unfreeze}")
    rows = []
    for name, policy, jit_compile in itertools.product(args.models, args.policies, JIT):
        dataset = models[name]
        batch_size = args.batch_size or dataset.train.batch_size
        rate, dtype = measure(
            dataset, policy, jit_compile, batch_size=batch_size, steps=args.steps,
            unfreeze=args.unfreeze,
        )
        rows.append([name, dataset.image_size, batch_size, policy, jit_compile, rate, dtype])
        print(f"{name} {policy} jit_compile={jit_compile}: {rate:.3g} images/s", flush=True)
    print_table(
        ["model", "px", "batch", "precision", "jit_compile", "images/s", "output dtype"], rows
    )
    print(f"tensorflow imported: {'tensorflow' in sys.modules}")


if __name__ == "__main__":
    main()
