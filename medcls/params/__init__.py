"""Params: typed models of params.yaml, validated before any stage works.

`dvc exp run -S lr=1e-5` writes `lr: 1e-05`, which a YAML 1.1 loader (PyYAML) reads as a string;
params are therefore read with ruamel's YAML 1.2 loader, the same one DVC uses. Every problem is
reported on one line that names its dotted key (`medcls.params.messages`).

A leaf package: it imports nothing else of medcls, so that every layer may import it.
"""

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from medcls.params.messages import describe
from medcls.params.schema import (
    DEFAULT_MAX_IMAGE_PIXELS,
    Application,
    ApplicationBackbone,
    AugmentParams,
    Backbone,
    BceLoss,
    CardParams,
    CsvLayout,
    CsvOptions,
    DatasetParams,
    EvaluateParams,
    FineTuneByFraction,
    FineTuneByLayers,
    FocalLoss,
    HeadBlock,
    HeadParams,
    Loss,
    MinSensitivity,
    NamedLayout,
    Params,
    ParamsError,
    PatternSubgroup,
    PdfBlockParams,
    Preprocessing,
    RoiParams,
    SavedBackbone,
    SizeSubgroup,
    SmallCnnBackbone,
    Source,
    SourceParams,
    SplitParams,
    Subgroup,
    SubgroupMinSize,
    TestOnlyDataset,
    ThresholdRule,
    TrainParams,
    subgroup_name,
)

__all__ = [
    "Application",
    "ApplicationBackbone",
    "AugmentParams",
    "Backbone",
    "BceLoss",
    "CardParams",
    "CsvLayout",
    "CsvOptions",
    "DatasetParams",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "EvaluateParams",
    "FineTuneByFraction",
    "FineTuneByLayers",
    "FocalLoss",
    "HeadBlock",
    "HeadParams",
    "load",
    "Loss",
    "MinSensitivity",
    "NamedLayout",
    "Params",
    "PARAMS_FILE",
    "ParamsError",
    "PatternSubgroup",
    "PdfBlockParams",
    "Preprocessing",
    "RoiParams",
    "SavedBackbone",
    "SizeSubgroup",
    "SmallCnnBackbone",
    "Source",
    "SourceParams",
    "SplitParams",
    "Subgroup",
    "SubgroupMinSize",
    "subgroup_name",
    "TestOnlyDataset",
    "ThresholdRule",
    "TrainParams",
    "validate",
]

PARAMS_FILE = Path("params.yaml")


def load(path: Path = PARAMS_FILE) -> Params:
    """Read params with a YAML 1.2 loader and validate them; raise ParamsError on any problem."""
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stages from the project root")
    try:
        params = YAML(typ="safe", pure=True).load(path.read_text())
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ParamsError(
            f"{path}: not valid YAML{where} ({problem}); fix the syntax there"
        ) from None
    if params is None:
        raise ParamsError(f"{path} is empty: it must hold the params mapping (see docs/reference/params.md)")
    return validate(params)


def validate(params: Any) -> Params:
    """The typed params, or a ParamsError listing every problem, one per line."""
    try:
        return Params.model_validate(params)
    except ValidationError as error:
        raise ParamsError("\n".join(map(describe, error.errors(include_url=False)))) from None
