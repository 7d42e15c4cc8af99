"""Params loading and validation: one schema for every dataset, checked before any stage does work.

`dvc exp run -S lr=1e-5` writes `lr: 1e-05`, which a YAML 1.1 loader (PyYAML) reads as a string;
params are therefore read with ruamel's YAML 1.2 loader, the same one DVC uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names the offending key."""


# --- schema -------------------------------------------------------------------------------------
# A schema node is a Python type, a set of allowed literal values, a dict of required/optional
# keys (`Optional(...)` marks optional ones), `MapOf(node)` for user-named entries, `ListOf(node)`,
# or `OneOf(...)` for alternatives. Validation walks the params tree and names the dotted key.


@dataclass(frozen=True)
class Optional:
    node: Any


@dataclass(frozen=True)
class MapOf:
    node: Any


@dataclass(frozen=True)
class ListOf:
    node: Any
    length: int | None = None


@dataclass(frozen=True)
class OneOf:
    nodes: tuple
    description: str


@dataclass(frozen=True)
class Range:
    """A number within [low, high]; `kind` is int or float."""

    kind: type
    low: float = -math.inf
    high: float = math.inf


Fraction = Range(float, 0.0, 1.0)
PositiveInt = Range(int, 1)
NonNegativeInt = Range(int, 0)
Probability = Range(float, 0.0, 1.0)

BACKBONE = OneOf(
    (
        {"name": {"efficientnetb0", "resnet50", "vgg16"}, "weights": str},
        {"name": {"small_cnn"}, Optional("filters"): ListOf(PositiveInt)},
        {"path": str, Optional("preprocessing"): {"none", "caffe", "torch", "tf", "unit"}},
    ),
    "{name: efficientnetb0|resnet50|vgg16, weights: imagenet|none|<file>}, "
    "{name: small_cnn, filters: [..]} or {path: <backbone.keras>, preprocessing: ..}",
)

HEAD_BLOCK = OneOf(
    (
        {
            "pdf": {
                "filters": PositiveInt,
                "kernel_sizes": ListOf(PositiveInt),
                "dilation_rates": ListOf(PositiveInt),
                Optional("reduce_to"): OneOf((PositiveInt, type(None)), "a positive int or null"),
                Optional("separable"): bool,
            }
        },
        {"se": {"ratio": PositiveInt}},
    ),
    "{pdf: {filters, kernel_sizes, dilation_rates, reduce_to, separable}} or {se: {ratio}}",
)

THRESHOLD_RULE = OneOf(
    ({"youden"}, Probability, {"min_sensitivity": Probability}),
    "youden, a fixed probability, or {min_sensitivity: 0.95}",
)

FINE_TUNE = OneOf(
    (
        {"epochs": NonNegativeInt, "patience": PositiveInt, "unfreeze_fraction": Fraction},
        {"epochs": NonNegativeInt, "patience": PositiveInt, "unfreeze_layers": PositiveInt},
    ),
    "{epochs, patience, unfreeze_fraction: 0..1} or {epochs, patience, unfreeze_layers: N}",
)

CSV_LAYOUT = {
    "table": str,
    "image_column": str,
    "label_column": str,
    "label_values": MapOf(Range(int, 0, 1)),
    Optional("image_folder"): str,
    Optional("image_extension"): str,
    Optional("mask_column"): str,
    Optional("mask_folder"): str,
    Optional("group_column"): str,
    Optional("group_pattern"): str,
}

DATASET = {
    "source": str,
    "layout": OneOf(
        ({"bus_uc", "busi", "kermany"}, {"csv": CSV_LAYOUT}),
        "one of ['bus_uc', 'busi', 'kermany'] or {csv: {table, image_column, label_column, "
        "label_values: {<value>: 0 or 1}, image_folder, image_extension, mask_column, "
        "mask_folder, group_column, group_pattern}}",
    ),
    "classes": ListOf(str, length=2),
    "image_size": Range(int, 16),
    "images_per_shard": PositiveInt,
    "roi": {
        "use_mask": bool,
        "margin": Range(float, 0.0, 2.0),
        "mask_background": bool,
        "keep_aspect": bool,
    },
    "backbone": BACKBONE,
    "head": {
        "blocks": ListOf(HEAD_BLOCK),
        "pooling": {"gap", "flatten"},
        "dense_units": PositiveInt,
        "dropout": Range(float, 0.0, 0.99),
    },
    "loss": OneOf(
        ({"name": {"focal"}, "alpha": Fraction, "gamma": Range(float, 0.0)}, {"name": {"bce"}}),
        "{name: focal, alpha, gamma} or {name: bce}",
    ),
    "class_weight": {"balanced", "none"},
    "augment": {
        Optional("flip_horizontal"): bool,
        Optional("flip_vertical"): bool,
        Optional("rotation"): Range(float, 0.0, 180.0),
        Optional("shift"): Fraction,
        Optional("shear"): Fraction,
        Optional("zoom"): Fraction,
        Optional("brightness"): ListOf(Range(float, 0.0), length=2),
        Optional("contrast"): Fraction,
        Optional("saturation"): Fraction,
        Optional("channel_shift"): Range(float, 0.0, 255.0),
    },
    "train": {
        "batch_size": PositiveInt,
        "epochs": NonNegativeInt,
        "patience": PositiveInt,
        "fine_tune": FINE_TUNE,
        "mixed_precision": {"auto", "float32", "mixed_float16", "mixed_bfloat16"},
        "jit_compile": OneOf(({"auto"}, bool), "auto, true or false"),
        Optional("cache_features"): bool,
    },
    "evaluate": {"threshold": THRESHOLD_RULE, "bootstrap": NonNegativeInt, "baseline": bool},
}

SCHEMA = {
    "seed": NonNegativeInt,
    "lr": Range(float, 0.0, 1.0),
    "fine_tune_lr": Range(float, 0.0, 1.0),
    "workers": NonNegativeInt,
    "split": {"train": Fraction, "val": Fraction, "test": Fraction},
    "datasets": MapOf(DATASET),
}


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check(node: Any, value: Any, key: str) -> None:
    """Raise ParamsError naming `key` when `value` does not match `node`."""
    if isinstance(node, OneOf):
        for option in node.nodes:
            try:
                _check(option, value, key)
                return
            except ParamsError:
                continue
        raise ParamsError(f"{key}: expected {node.description}, got {_type_name(value)}")
    if isinstance(node, Range):
        _check_number(node, value, key)
    elif isinstance(node, set):
        if not isinstance(value, str) or value not in node:
            raise ParamsError(f"{key}: expected one of {sorted(node)}, got {_type_name(value)}")
    elif isinstance(node, ListOf):
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {_type_name(value)}")
        if node.length is not None and len(value) != node.length:
            raise ParamsError(f"{key}: expected {node.length} items, got {len(value)}")
        for index, item in enumerate(value):
            _check(node.node, item, f"{key}[{index}]")
    elif isinstance(node, MapOf):
        if not isinstance(value, Mapping) or not value:
            raise ParamsError(f"{key}: expected a non-empty mapping of named entries")
        for name, item in value.items():
            _check(node.node, item, f"{key}.{name}")
    elif isinstance(node, dict):
        _check_mapping(node, value, key)
    elif node is type(None):
        if value is not None:
            raise ParamsError(f"{key}: expected null, got {_type_name(value)}")
    elif not isinstance(value, node) or (node is not bool and isinstance(value, bool)):
        raise ParamsError(f"{key}: expected {node.__name__}, got {_type_name(value)}")


def _check_number(node: Range, value: Any, key: str) -> None:
    allowed = (int,) if node.kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise ParamsError(f"{key}: expected {node.kind.__name__}, got {_type_name(value)}")
    if not node.low <= value <= node.high:
        raise ParamsError(f"{key}: {value} is outside [{node.low}, {node.high}]")


def _check_mapping(node: dict, value: Any, key: str) -> None:
    if not isinstance(value, Mapping):
        raise ParamsError(f"{key}: expected a mapping, got {_type_name(value)}")
    known = {k.node if isinstance(k, Optional) else k: k for k in node}
    prefix = f"{key}." if key else ""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ParamsError(
            f"{prefix}{unknown[0]}: unknown key (typo?); allowed here: {', '.join(sorted(known))}"
        )
    for name, spec in known.items():
        if name not in value:
            if not isinstance(spec, Optional):
                raise ParamsError(f"{prefix}{name}: required key is missing")
            continue
        _check(node[spec], value[name], f"{prefix}{name}")


def validate(params: Mapping) -> None:
    """Check the whole params tree against the schema, then the cross-key rules."""
    _check(SCHEMA, params, "")
    total = sum(params["split"].values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ParamsError(f"split: train + val + test must sum to 1, got {total:g}")
    for name, dataset in params["datasets"].items():
        for index, block in enumerate(dataset["head"]["blocks"]):
            pdf = block.get("pdf")
            if pdf and len(pdf["kernel_sizes"]) != len(pdf["dilation_rates"]):
                raise ParamsError(
                    f"datasets.{name}.head.blocks[{index}].pdf: kernel_sizes and dilation_rates "
                    "must have the same length (one dilated branch per pair)"
                )


def load(path: Path = PARAMS_FILE) -> dict:
    """Read params with a YAML 1.2 loader and validate them; raise ParamsError on any problem."""
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stages from the project root")
    params = YAML(typ="safe", pure=True).load(path.read_text())
    validate(params)
    return params
