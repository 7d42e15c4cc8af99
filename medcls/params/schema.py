"""The typed models of params.yaml: one schema for every dataset.

Validation is strict (no string for a number, no `true` for an int, no unknown key); a model's
own checks raise ValueError (or ItemError for one item of a list), which `medcls.params.messages`
turns into a line that names the dotted key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are 32-bit
MIN_APPLICATION_SIZE = 32  # the smallest input keras.applications builds
# Pillow's default decompression-bomb limit: far above any scan (the real sets stay under 1 Mpx),
# far below what a 20000 x 20000 picture costs to decode (1.2 GB, and more while drawing it).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# The largest model input: 1024 px images already take 12 MB a piece in float32 before the backbone
# multiplies them into feature maps; the backbones are built and pretrained for a few hundred px.
MAX_IMAGE_SIZE = 1024
MIN_BOOTSTRAP = 40  # 2.5 % tails of fewer resamples are single draws, which may miss the estimate


class ParamsError(ValueError):
    """A params file that does not match the schema: one line per problem, each naming its key."""


class ItemError(ValueError):
    """A problem of one item of a list, raised by the list's validator: reported at the item's own
    key (`tta[1]: ...`), not the list's."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(problem)
        self.index = index


def _regular_expression(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a regular expression ({error}): {pattern!r}") from None
    return pattern


def _first_repeat(items: list) -> ItemError | None:
    """An ItemError for the first item that repeats an earlier one, or None."""
    for index, item in enumerate(items):
        if item in items[:index]:
            return ItemError(index, f"{item!r} repeats item [{items.index(item)}]")
    return None


class Section(BaseModel):
    """A mapping of params: unknown keys are typos, and values are never converted from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Fraction = Annotated[float, Field(ge=0, le=1)]
PositiveFraction = Annotated[float, Field(gt=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonEmptyText = Annotated[str, Field(min_length=1)]


def _as_mapping(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def tagged_union(form_of: Callable[[Any], str | None], expected: str, **forms: Any) -> Any:
    """A union whose member `form_of(value)` names (a key of `forms`; a model is passed as its
    mapping). A value it names no member for is reported as "expected <expected>", which lists the
    forms in the params file's terms, instead of one error per member."""
    members = tuple(Annotated[member, Tag(name)] for name, member in forms.items())

    def tag(value: Any) -> str | None:
        form = form_of(_as_mapping(value))
        return form if isinstance(form, str) and form in forms else None

    return Annotated[
        Union[members],  # noqa: UP007  (a tuple of members needs Union[...])
        Discriminator(
            tag,
            custom_error_type="form",
            custom_error_message=f"expected {expected}",
        ),
    ]


def _keys(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _only_key(value: Any) -> str | None:
    return next(iter(value)) if len(_keys(value)) == 1 else None


def _name(value: Any) -> Any:
    return _keys(value).get("name")


# --- backbone ---------------------------------------------------------------------------------

Application = Literal["efficientnetb0", "resnet50", "vgg16"]
Preprocessing = Literal["none", "caffe", "torch", "tf", "unit"]


class ApplicationBackbone(Section):
    """A Keras application with `weights`: imagenet, none, or a weights file."""

    name: Application
    weights: str

    @property
    def min_image_size(self) -> int:
        return MIN_APPLICATION_SIZE


class SmallCnnBackbone(Section):
    """Conv + 2x2 max-pool per filter count, trained from scratch."""

    name: Literal["small_cnn"] = "small_cnn"
    filters: list[PositiveInt] = Field(default=[32, 64, 128], min_length=1)

    @property
    def min_image_size(self) -> int:
        return 2 ** len(self.filters)  # every max-pool halves the side


class SavedBackbone(Section):
    """A backbone saved as `.keras`, with the input preprocessing it expects."""

    path: str
    preprocessing: Preprocessing = "none"

    @property
    def min_image_size(self) -> int:
        return 1  # unknown until the file is loaded


def _backbone_form(value: Any) -> str | None:
    if "path" in _keys(value):
        return "saved"
    return "application" if _name(value) in get_args(Application) else _name(value)


Backbone = tagged_union(
    _backbone_form,
    "{name: efficientnetb0|resnet50|vgg16, weights: imagenet|none|<file>}, "
    "{name: small_cnn, filters: [..]} or {path: <backbone.keras>, preprocessing: ..}",
    application=ApplicationBackbone,
    small_cnn=SmallCnnBackbone,
    saved=SavedBackbone,
)

# --- head -------------------------------------------------------------------------------------


class PdfOptions(Section):
    filters: PositiveInt
    kernel_sizes: list[PositiveInt] = Field(min_length=1)
    dilation_rates: list[PositiveInt] = Field(min_length=1)
    reduce_to: PositiveInt | None = None
    separable: bool = False

    @model_validator(mode="after")
    def _one_branch_per_pair(self) -> PdfOptions:
        if len(self.kernel_sizes) != len(self.dilation_rates):
            raise ValueError(
                "kernel_sizes and dilation_rates must have the same length (one dilated branch per pair)"
            )
        return self


class PdfBlockParams(Section):
    """`{pdf: {...}}`: parallel dilated convolutions."""

    pdf: PdfOptions


class SeOptions(Section):
    ratio: PositiveInt


class SeBlockParams(Section):
    """`{se: {ratio}}`: squeeze-and-excitation."""

    se: SeOptions


HeadBlock = tagged_union(
    _only_key,
    "{pdf: {filters, kernel_sizes, dilation_rates, reduce_to, separable}} or {se: {ratio}}",
    pdf=PdfBlockParams,
    se=SeBlockParams,
)


class HeadParams(Section):
    blocks: list[HeadBlock]
    pooling: Literal["gap", "flatten"]
    dense_units: PositiveInt
    dropout: Annotated[float, Field(ge=0, le=0.99)]


# --- loss, augmentation, training -------------------------------------------------------------


class FocalLoss(Section):
    name: Literal["focal"] = "focal"
    alpha: Fraction
    gamma: Annotated[float, Field(ge=0)]


class BceLoss(Section):
    name: Literal["bce"] = "bce"


Loss = tagged_union(
    _name,
    "{name: focal, alpha, gamma} or {name: bce}",
    focal=FocalLoss,
    bce=BceLoss,
)


class RoiParams(Section):
    use_mask: bool
    margin: Annotated[float, Field(ge=0, le=2)]
    mask_background: bool
    keep_aspect: bool
    # training sees a margin drawn per image in [margin - j, margin + j] (at least 0); every other
    # use of the images sees `margin`
    margin_jitter: Annotated[float, Field(ge=0, le=2)] = 0.0
    # contrast-limited adaptive histogram equalization of the cropped region (its clip limit; 0 = off):
    # evens out gain and contrast settings that differ between scanners
    clahe: Annotated[float, Field(ge=0, le=40)] = 0.0

    @model_validator(mode="after")
    def _jitter_needs_a_mask(self) -> RoiParams:
        if self.margin_jitter and not self.use_mask:
            raise ValueError("margin_jitter needs use_mask: true (the margin is around the mask box)")
        return self


class AugmentParams(Section):
    """Augmentations of training batches; a key left out (or 0, false) is off."""

    flip_horizontal: bool = False
    flip_vertical: bool = False
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0
    shift: Fraction = 0.0
    shear: Fraction = 0.0
    zoom: Fraction = 0.0
    brightness: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, min_length=2, max_length=2
    )
    contrast: Fraction = 0.0
    saturation: Fraction = 0.0
    channel_shift: Annotated[float, Field(ge=0, le=255)] = 0.0
    # ultrasound: multiplicative speckle (std of the per-pixel factor), gamma range, largest blur
    # sigma in pixels, smallest side fraction of a simulated lower-resolution scan
    speckle: Annotated[float, Field(ge=0, le=1)] = 0.0
    gamma: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None, min_length=2, max_length=2
    )
    blur: Annotated[float, Field(ge=0, le=10)] = 0.0
    downscale: Fraction = 0.0

    @field_validator("brightness", "gamma")
    @classmethod
    def _low_then_high(cls, bounds: list[float] | None) -> list[float] | None:
        if bounds and bounds[0] > bounds[1]:
            raise ValueError(f"expected [low, high] with low <= high, got {bounds}")
        return bounds


class FineTuneByFraction(Section):
    """Phase 2 unfreezes the top `unfreeze_fraction` of the backbone's layers with weights."""

    epochs: NonNegativeInt
    patience: PositiveInt
    unfreeze_fraction: Fraction


class FineTuneByLayers(Section):
    """Phase 2 unfreezes the last `unfreeze_layers` of the backbone's layers with weights."""

    epochs: NonNegativeInt
    patience: PositiveInt
    unfreeze_layers: PositiveInt


def _fine_tune_form(value: Any) -> str | None:
    forms = [key for key in ("unfreeze_fraction", "unfreeze_layers") if key in _keys(value)]
    return forms[0] if len(forms) == 1 else None


FineTune = tagged_union(
    _fine_tune_form,
    "{epochs, patience, unfreeze_fraction: 0..1} or {epochs, patience, unfreeze_layers: N}",
    unfreeze_fraction=FineTuneByFraction,
    unfreeze_layers=FineTuneByLayers,
)


class TrainParams(Section):
    batch_size: PositiveInt
    epochs: NonNegativeInt
    patience: PositiveInt
    fine_tune: FineTune
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
    jit_compile: Literal["auto", True, False]
    cache_features: bool = False
    deterministic: bool = True  # seeds and TensorFlow op determinism: same seed, same results
    # share of the machine's memory that in-RAM caches (decoded images, backbone features) may
    # fill; a split that needs more is streamed from its shards, features go to disk (0: never cache)
    memory_fraction: Fraction = 0.25


# --- evaluation -------------------------------------------------------------------------------


class MinSensitivity(Section):
    """The highest threshold whose validation sensitivity reaches `min_sensitivity`."""

    min_sensitivity: Fraction


def _threshold_form(value: Any) -> str | None:
    if value == "youden":
        return "youden"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "fixed"
    return "min_sensitivity" if isinstance(value, Mapping) else None


ThresholdRule = tagged_union(
    _threshold_form,
    "youden, a fixed probability, or {min_sensitivity: 0.95}",
    youden=Literal["youden"],
    fixed=Fraction,
    min_sensitivity=MinSensitivity,
)


# flip_horizontal: the mirror image; zoom_in: the central 90 % of the crop, resized back
TtaView = Literal["flip_horizontal", "zoom_in"]


class PatternSubgroup(Section):
    """`{name, pattern}`: a value read from the image's file name, the first match of `pattern`
    (its first capture group if it has one); a file name it does not match is `unknown`."""

    name: NonEmptyText
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        return _regular_expression(pattern)


class SizeSubgroup(Section):
    """`{name, longer_side: [edges]}` or `{name, shorter_side: [edges]}`: a side of the source
    image in pixels (the manifest's width and height), in buckets that start at each edge:
    [300] gives `<300 px` and `≥300 px`. (A copy shrunk to one longer side differs in its
    shorter one.)"""

    name: NonEmptyText
    longer_side: list[PositiveInt] | None = Field(default=None, min_length=1)
    shorter_side: list[PositiveInt] | None = Field(default=None, min_length=1)

    @field_validator("longer_side", "shorter_side")
    @classmethod
    def _increasing(cls, edges: list[int] | None) -> list[int] | None:
        if edges and edges != sorted(set(edges)):
            raise ValueError(f"expected increasing pixel edges, got {edges}")
        return edges

    @model_validator(mode="after")
    def _one_side(self) -> SizeSubgroup:
        if (self.longer_side is None) == (self.shorter_side is None):
            raise ValueError("give longer_side or shorter_side (the bucket edges), not both")
        return self

    @property
    def edges(self) -> list[int]:
        return self.longer_side or self.shorter_side

    @property
    def side(self) -> str:
        return "longer" if self.longer_side else "shorter"


def _subgroup_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "column"
    if "pattern" in _keys(value):
        return "pattern"
    return "size" if {"longer_side", "shorter_side"} & set(_keys(value)) else None


# A subgroup of the scored images: a manifest column by name (`source`, a csv layout's
# `keep_columns`), a value read from the file name, or a bucket of the source image size.
Subgroup = tagged_union(
    _subgroup_form,
    "a manifest column name, {name, pattern: <regex on the file name>} or "
    "{name, longer_side or shorter_side: [<pixel edges>]}",
    column=NonEmptyText,
    pattern=PatternSubgroup,
    size=SizeSubgroup,
)


def subgroup_name(subgroup: Subgroup) -> str:
    """The name a subgroup is reported under: the column, or its `name`."""
    return subgroup if isinstance(subgroup, str) else subgroup.name


def _distinct_subgroups(subgroups: list) -> list:
    names = [subgroup_name(subgroup) for subgroup in subgroups]
    if repeat := _first_repeat(names):
        raise repeat
    return subgroups


class SubgroupMinSize(Section):
    """A subgroup with fewer images, or fewer of either class, is reported as too small to score:
    its AUC and rates would be noise."""

    images: PositiveInt = 20
    per_class: NonNegativeInt = 5


class CardParams(Section):
    """What the model card says the model is for, and what it is not for: only the authors know
    (CLAIM 2024 items 3 and 41); the defaults say it is a research result."""

    intended_use: NonEmptyText = (
        "research: how well this recipe tells the two classes apart on held-out images of the "
        "sources it was trained on"
    )
    out_of_scope: NonEmptyText = (
        "clinical diagnosis, screening or triage of patients; images of other modalities, "
        "scanners, hospitals or populations without an external test on them"
    )


class EvaluateParams(Section):
    threshold: ThresholdRule
    bootstrap: NonNegativeInt  # resamples for the 95 % intervals; 0: no intervals
    baseline: bool
    # Other datasets of params.yaml the model is tested on, prepared with this dataset's image_size
    # and roi; their threshold is this dataset's, chosen on its own validation.
    external: list[str] = []
    external_images: Literal["all", "test"] = "all"  # all usable images, or their test split
    # group: resample whole patients (cluster bootstrap), as images of one patient are not
    # independent; image: resample images
    external_bootstrap: Literal["group", "image"] = "group"
    # Test-time augmentation: the probability is the mean over the plain image and these views of
    # it, wherever the model scores images (evaluate, `medcls predict`); the baseline is unaffected
    tta: list[TtaView] = []
    # temperature: one T fitted on val (the fold models': out-of-fold) rescales every probability
    # of the model, sigmoid(logit / T), so that they are calibrated; ranks and decisions unchanged
    calibration: Literal["none", "temperature"] = "none"
    # Subgroups of the test images scored on their own (n, AUC, sensitivity and specificity at the
    # threshold, patient-grouped intervals); external_subgroups: those of each external test set
    subgroups: list[Subgroup] = []
    external_subgroups: dict[str, list[Subgroup]] = {}
    subgroup_min_size: SubgroupMinSize = SubgroupMinSize()
    card: CardParams = CardParams()  # the model card's intended and out-of-scope use

    @field_validator("tta", "external")
    @classmethod
    def _each_once(cls, items: list[str]) -> list[str]:
        """A repeated view or external set would be scored twice under one key."""
        if repeat := _first_repeat(items):
            raise repeat
        return items

    @field_validator("subgroups")
    @classmethod
    def _subgroup_names_once(cls, subgroups: list) -> list:
        """Two subgroups of one name would be reported under one key."""
        return _distinct_subgroups(subgroups)

    @field_validator("external_subgroups")
    @classmethod
    def _external_subgroup_names_once(cls, by_set: dict) -> dict:
        for name, subgroups in by_set.items():
            names = [subgroup_name(subgroup) for subgroup in subgroups]
            if repeat := _first_repeat(names):
                raise ValueError(f"{name}[{repeat.index}]: {repeat}")
        return by_set

    @model_validator(mode="after")
    def _external_subgroups_of_external_sets(self) -> EvaluateParams:
        for name in self.external_subgroups:
            if name not in self.external:
                raise ValueError(
                    f"external_subgroups.{name}: not an external test set of this dataset; "
                    f"evaluate.external is {self.external}"
                )
        return self

    @field_validator("bootstrap")
    @classmethod
    def _enough_resamples(cls, bootstrap: int) -> int:
        if 0 < bootstrap < MIN_BOOTSTRAP:
            raise ValueError(
                f"expected 0 (no intervals) or at least {MIN_BOOTSTRAP} resamples for a 95 % "
                f"interval, got {bootstrap}"
            )
        return bootstrap


# --- layout -----------------------------------------------------------------------------------

NamedLayout = Literal["bus_uc", "busi", "kermany"]


class CsvOptions(Section):
    """`layout: {csv: {...}}`: a folder of images plus a table of one row per image.

    `image_column` holds a file name (or an id, completed by `image_extension`) relative to
    `image_folder`; `label_values` maps the table's label values to 0 and 1 (other values are
    rejected). Masks come from `mask_column` (relative to `mask_folder`) or, without it, from
    `mask_folder` under the image's own name. The group (patient) is `group_column`, or the first
    match of `group_pattern` in the image's file name (its first capture group if it has one).
    """

    table: str
    image_column: str
    label_column: str
    label_values: dict[str, Annotated[int, Field(ge=0, le=1)]] = Field(min_length=1)
    image_folder: str = ""
    image_extension: str = ""
    mask_column: str | None = None
    mask_folder: str | None = None
    group_column: str | None = None
    group_pattern: str | None = None
    # further table columns copied into the manifest (e.g. the scanner, for evaluate.subgroups)
    keep_columns: list[NonEmptyText] = []

    @field_validator("label_values", mode="before")
    @classmethod
    def _keys_as_text(cls, label_values: Any) -> Any:
        """YAML reads `label_values: {0: 0}` with an int key; table cells are text."""
        if isinstance(label_values, Mapping):
            return {str(key): value for key, value in label_values.items()}
        return label_values

    @field_validator("label_values")
    @classmethod
    def _both_labels(cls, label_values: dict) -> dict:
        if sorted(set(label_values.values())) != [0, 1]:
            raise ValueError(f"expected table values mapped to both 0 and 1, got {label_values}")
        return label_values

    @field_validator("group_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        return pattern if pattern is None else _regular_expression(pattern)

    @field_validator("keep_columns")
    @classmethod
    def _keep_each_once(cls, columns: list[str]) -> list[str]:
        if repeat := _first_repeat(columns):
            raise repeat
        return columns

    @model_validator(mode="after")
    def _one_group_source(self) -> CsvOptions:
        if self.group_column is not None and self.group_pattern is not None:
            raise ValueError("give group_column or group_pattern, not both")
        return self


class CsvLayout(Section):
    csv: CsvOptions


Layout = tagged_union(
    lambda value: "named" if isinstance(value, str) else _only_key(value),
    "one of ['bus_uc', 'busi', 'kermany'] or {csv: {table, image_column, label_column, "
    "label_values: {<value>: 0 or 1}, image_folder, image_extension, mask_column, "
    "mask_folder, group_column, group_pattern, keep_columns}}",
    named=NamedLayout,
    csv=CsvLayout,
)


# --- a dataset and the whole file ---------------------------------------------------------------


DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # names become file names and DVC stage names


def _two_different_classes(classes: list[str]) -> list[str]:
    if classes[0].casefold() == classes[1].casefold():
        raise ValueError(
            f"expected two different class folders (compared ignoring case), got {classes}"
        )
    return classes


ClassNames = Annotated[list[str], Field(min_length=2, max_length=2)]


class SourceParams(Section):
    """One source of a dataset of several (`sources: {<name>: {...}}`): where its images come from,
    how its folder is read, and whether it is held out of training (leave-one-source-out)."""

    source: str
    layout: Layout
    # this source's own class folder names (or csv labels), label 0 then 1; default: the dataset's
    classes: ClassNames | None = None
    hold_out: bool = False  # true: every image of this source goes to the test split

    @field_validator("classes")
    @classmethod
    def _classes_differ(cls, classes: list[str] | None) -> list[str] | None:
        return classes and _two_different_classes(classes)


@dataclass(frozen=True)
class Source:
    """One source of a dataset as the data stages read it, whichever form params.yaml gives."""

    name: str
    source: str
    layout: Layout
    classes: list[str]  # label 0 then 1: the source's own, else the dataset's
    hold_out: bool
    folder: str  # of its files within data/raw/<dataset>: "" (the folder itself) for one source
    at: str  # the params key it is given under, for messages that say what to change

    @property
    def key(self) -> str:
        """The params key of its `source`."""
        return f"{self.at}.source"


class DataParams(Section):
    """Where a dataset's images come from and which classes it has: all that its download,
    manifest and split stages need. One source (`source` + `layout`) or several (`sources`)."""

    source: str | None = None
    layout: Layout | None = None
    sources: dict[Annotated[str, Field(pattern=DATASET_NAME)], SourceParams] | None = Field(
        default=None, min_length=1
    )
    classes: ClassNames
    _named_sources: dict[str, Source] = PrivateAttr(default_factory=dict)

    @field_validator("classes")
    @classmethod
    def _classes_differ(cls, classes: list[str]) -> list[str]:
        return _two_different_classes(classes)

    @model_validator(mode="after")
    def _one_form(self) -> DataParams:
        single = [key for key in ("source", "layout") if getattr(self, key) is not None]
        if self.sources is None and len(single) < 2:
            missing = " and ".join(key for key in ("source", "layout") if key not in single)
            raise ValueError(
                f"{missing}: required key missing; give source and layout (one source), or "
                "sources: {<name>: {source, layout}} (several)"
            )
        if self.sources is not None and single:
            raise ValueError(
                f"give source and layout (one source) or sources (several), not both; "
                f"found {' and '.join(single)} beside sources"
            )
        return self

    @property
    def named_sources(self) -> dict[str, Source]:
        """Every source by name, in one form whether params.yaml gives one (`source` + `layout`,
        named after the dataset) or several (`sources`); named when the params file is validated."""
        return self._named_sources

    def _name_sources(self, dataset: str) -> None:
        if self.sources is None:
            at = f"datasets.{dataset}"
            only = Source(dataset, self.source, self.layout, self.classes, False, "", at)
            self._named_sources = {dataset: only}
            return
        self._named_sources = {
            name: Source(
                name,
                source.source,
                source.layout,
                source.classes or self.classes,
                source.hold_out,
                folder=name,
                at=f"datasets.{dataset}.sources.{name}",
            )
            for name, source in self.sources.items()
        }

    def held_out(self) -> list[str]:
        """The sources whose images all go to the test split."""
        return [name for name, source in (self.sources or {}).items() if source.hold_out]


class TestOnlyDataset(DataParams):
    """`test_only: true`: a dataset that other datasets' models are tested on (their
    `evaluate.external`); it is downloaded, listed and split, but has no model of its own."""

    test_only: Literal[True]


class DatasetParams(DataParams):
    """A dataset a model is trained on."""

    image_size: Annotated[int, Field(ge=16)]
    images_per_shard: PositiveInt
    roi: RoiParams
    backbone: Backbone
    head: HeadParams
    loss: Loss
    class_weight: Literal["balanced", "none"]
    augment: AugmentParams
    train: TrainParams
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def _something_to_train_on(self) -> DatasetParams:
        if self.sources and len(self.held_out()) == len(self.sources):
            raise ValueError(
                "every source has hold_out: true, which leaves nothing to train on; "
                "hold out fewer sources (or make the dataset test_only)"
            )
        return self

    @model_validator(mode="after")
    def _image_fits_the_backbone(self) -> DatasetParams:
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size {self.image_size} is too large: at most {MAX_IMAGE_SIZE} px, as a "
                "batch of such inputs and their feature maps would not fit in memory"
            )
        if self.image_size < self.backbone.min_image_size:
            raise ValueError(
                f"image_size {self.image_size} is too small for this backbone, which needs at "
                f"least {self.backbone.min_image_size} px"
            )
        return self


class SplitParams(Section):
    """Fractions of every class in each split; evaluate needs val and test, so none may be 0.

    `folds` > 1 deals train + val into that many grouped, stratified cross-validation folds; the
    test split stays the same."""

    train: PositiveFraction
    val: PositiveFraction
    test: PositiveFraction
    folds: PositiveInt = 1
    # The fold numbers dvc.yaml's train_fold stage iterates over: DVC cannot count up to `folds`.
    fold_ids: list[NonNegativeInt] = []
    # The split's own seed (default: the top-level `seed`): with it set, another `seed` retrains on
    # the same splits, which measures how far a number moves with training's randomness alone.
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None

    @property
    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @model_validator(mode="after")
    def _fold_ids_count_the_folds(self) -> SplitParams:
        expected = list(range(self.folds)) if self.folds > 1 else []
        if self.fold_ids != expected:
            raise ValueError(
                f"fold_ids must be {expected} for folds: {self.folds} (dvc.yaml runs one train_fold "
                f"stage per entry; DVC cannot count), got {self.fold_ids}"
            )
        return self

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        return self


AnyDataset = tagged_union(
    lambda value: "test_only" if "test_only" in _keys(value) else "trained",
    "a dataset's params, or {source, layout, classes, test_only: true}",
    trained=DatasetParams,
    test_only=TestOnlyDataset,
)


class Params(Section):
    """Everything in params.yaml."""

    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    lr: PositiveFraction
    fine_tune_lr: PositiveFraction
    workers: NonNegativeInt
    # Images and masks whose header declares more pixels are rejected before they are decoded.
    max_image_pixels: PositiveInt = DEFAULT_MAX_IMAGE_PIXELS
    split: SplitParams
    # Names become file names and DVC stage names (download@<name>).
    datasets: dict[
        Annotated[str, Field(pattern=DATASET_NAME)], AnyDataset
    ] = Field(min_length=1)
    # The datasets with a model, in order: dvc.yaml's roi, train and evaluate stages iterate over
    # this list, as DVC cannot filter the test-only datasets out of `datasets`.
    trained: list[str]

    @model_validator(mode="after")
    def _name_the_sources(self) -> Params:
        for name, dataset in self.datasets.items():
            dataset._name_sources(name)
        return self

    @model_validator(mode="after")
    def _trained_lists_every_dataset_with_a_model(self) -> Params:
        expected = [
            name for name, dataset in self.datasets.items() if isinstance(dataset, DatasetParams)
        ]
        for index, name in enumerate(self.trained):
            if name not in self.datasets:
                raise ValueError(
                    f"trained[{index}]: {name!r} is not a dataset of params.yaml; defined: "
                    f"{', '.join(self.datasets)}"
                )
            if name not in expected:
                raise ValueError(f"trained[{index}]: {name!r} is test_only: it has no model")
        if repeat := _first_repeat(self.trained):
            raise ValueError(f"trained[{repeat.index}]: {repeat}")
        if self.trained != expected:
            raise ValueError(
                f"trained: must be {expected} (every dataset that is not test_only, in the order of "
                f"datasets: dvc.yaml's roi, train and evaluate stages iterate over it), got "
                f"{self.trained}"
            )
        return self

    @model_validator(mode="after")
    def _external_datasets_exist(self) -> Params:
        for name, dataset in self.datasets.items():
            external = dataset.evaluate.external if isinstance(dataset, DatasetParams) else []
            for index, other in enumerate(external):
                if other == name or other not in self.datasets:
                    defined = ", ".join(sorted(set(self.datasets) - {name}))
                    raise ValueError(
                        f"datasets.{name}.evaluate.external[{index}]: {other!r} is not another "
                        f"dataset of params.yaml; defined: {defined or 'none'}"
                    )
        return self

    def dataset(self, name: str) -> DatasetParams | TestOnlyDataset:
        """The params of dataset `name`; a ParamsError lists the defined ones."""
        if name not in self.datasets:
            raise ParamsError(
                f"datasets.{name}: no such dataset; defined: {', '.join(self.datasets)}"
            )
        return self.datasets[name]

    def trained_dataset(self, name: str) -> DatasetParams:
        """The params of dataset `name`, which must have a model (not be test_only)."""
        dataset = self.dataset(name)
        if isinstance(dataset, TestOnlyDataset):
            raise ParamsError(
                f"datasets.{name} is test_only: it has no model; trained: {', '.join(self.trained)}"
            )
        return dataset
