"""Pydantic's validation errors in the params file's terms: one line per problem, naming its dotted
key, e.g. `datasets.bus_uc.roi.margn: unknown key (typo?); allowed here: ...`."""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag
from pydantic.fields import FieldInfo

from medcls.params.schema import ItemError, Params

EXPECTED_TYPES = {
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
    "bool_type": "bool",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def describe(problem: Mapping) -> str:
    """One line for one pydantic error, in the params file's terms."""
    key, annotation, model = _locate(problem["loc"])
    kind, value = problem["type"], problem.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (typo?); allowed here: {', '.join(sorted(model.model_fields))}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in BOUND_ERRORS:
        return f"{key}: {value} is outside {_interval(annotation)}"
    if kind == "literal_error":
        allowed = sorted(get_args(_unwrap(annotation)[0]), key=str)
        return f"{key}: expected one of {allowed}, got {_shown(value)}"
    if kind in EXPECTED_TYPES:
        return f"{key}: expected {EXPECTED_TYPES[kind]}, got {_shown(value)}"
    if kind in ("too_short", "too_long"):
        if isinstance(value, Mapping):
            return f"{key}: expected a non-empty mapping of named entries"
        return f"{key}: expected {_length(annotation)} items, got {len(value)}"
    if kind == "string_pattern_mismatch":
        return f"{key}: expected a name of letters, digits, '_', '.' and '-', got {value!r}"
    if kind == "value_error":  # a whole-file check names its keys itself
        error = problem["ctx"]["error"]
        if isinstance(error, ItemError):
            key = f"{key}[{error.index}]"
        return f"{key}: {error}" if key else str(error)
    return f"{key}: {problem['msg']}, got {_shown(value)}"


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _unwrap(annotation: Any) -> tuple[Any, list]:
    """(type, constraints) of a possibly nested `Annotated[...]`, FieldInfo constraints flattened."""
    metadata: list = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata = extra + metadata
    flat = []
    for item in metadata:
        flat.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return annotation, flat


def _locate(loc: tuple) -> tuple[str, Any, type[BaseModel]]:
    """The dotted key of a pydantic error location, the annotation found there and the model that
    holds it. Union tags in the location (which form of a backbone, loss, ...) are not keys."""
    key, annotation, model = "", Params, Params
    for part in loc:
        if part == "[key]":  # the problem is a dataset's name, not its value
            continue
        node = _unwrap(annotation)[0]
        if isinstance(node, type) and issubclass(node, BaseModel):
            model, field = node, node.model_fields.get(part)
            key = f"{key}.{part}" if key else str(part)
            present = field and _without_none(field.annotation)
            annotation = field and (
                Annotated[(present, *field.metadata)] if field.metadata else present
            )
        elif get_origin(node) is Union:
            annotation = next(
                member
                for member in get_args(node)
                if any(isinstance(item, Tag) and item.tag == part for item in _unwrap(member)[1])
            )
        elif get_origin(node) is list:
            key, annotation = f"{key}[{part}]", get_args(node)[0]
        elif get_origin(node) is dict:
            key, annotation = f"{key}.{part}", get_args(node)[1]
    return key, annotation, model


def _without_none(annotation: Any) -> Any:
    """`X` of an optional `X | None` (a key that may be left out); any other annotation as is."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    present = [member for member in members if member is not type(None)]
    return present[0] if len(members) == 2 and len(present) == 1 else annotation


def _constraint(annotation: Any, name: str) -> Any:
    """A constraint of an annotation by its attribute name ("ge", "min_length", ...), or None."""
    return next(
        (getattr(item, name) for item in _unwrap(annotation)[1] if hasattr(item, name)), None
    )


def _length(annotation: Any) -> str:
    """The allowed length of a list, e.g. "2" or "at least 1"."""
    low, high = _constraint(annotation, "min_length") or 0, _constraint(annotation, "max_length")
    return str(low) if low == high else f"at least {low}" if high is None else f"{low} to {high}"


def _interval(annotation: Any) -> str:
    """The allowed range of a bounded number, e.g. "[0, 1]" or "(0, 1]"."""
    ge, gt, le, lt = (_constraint(annotation, name) for name in ("ge", "gt", "le", "lt"))
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else "(-inf"
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else "inf)"
    return f"{low}, {high}"
