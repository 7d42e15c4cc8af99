"""The model card: one page a reviewer or regulator reads before trusting a trained model.

`reports/<name>_card.json` and its Markdown twin `reports/<name>_card.md`, which the evaluate
stage writes from `model_card` and `card_markdown`. Every number is quoted from an object the
pipeline already wrote (the headline metrics, the evaluation's subgroups and calibration, the data
stages' files, the train stage's summary), never recomputed, so the card cannot disagree with the
metrics. Each section names the CLAIM 2024 items
(Tejani et al., Radiology: Artificial Intelligence 2024; 44 items) it answers; the items only the
authors can answer are listed as such. Limitations are derived from the numbers themselves.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from medcls.evaluation import subgroups
from medcls.evaluation.review import flattened
from medcls.params import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths

# Checklist items by number, as CLAIM 2024 names them (shortened).
CLAIM_2024 = {
    1: "title identifies the AI methodology",
    2: "structured summary",
    3: "background, intended use and role of the AI",
    4: "study aims and hypotheses",
    5: "prospective or retrospective study",
    6: "study goal",
    7: "data sources",
    8: "inclusion and exclusion criteria",
    9: "data preprocessing",
    10: "selection of data subsets",
    11: "de-identification",
    12: "missing data",
    13: "image acquisition protocol",
    14: "definition of the reference standard",
    15: "rationale for the reference standard",
    16: "source of reference standard annotations",
    17: "annotation of the test set",
    18: "inter- and intrarater variability",
    19: "how data were assigned to partitions",
    20: "level at which partitions are disjoint",
    21: "intended sample size",
    22: "detailed description of the model",
    23: "software libraries, frameworks and packages",
    24: "initialization of model parameters",
    25: "details of the training approach",
    26: "method of selecting the final model",
    27: "ensembling",
    28: "metrics of model performance",
    29: "statistical measures of significance and uncertainty",
    30: "robustness or sensitivity analysis",
    31: "explainability or interpretability",
    32: "evaluation on internal data",
    33: "testing on external data",
    34: "clinical trial registration",
    35: "numbers of patients or examinations included and excluded",
    36: "characteristics of cases in each partition",
    37: "performance metrics with statistical uncertainty",
    38: "estimates of diagnostic performance and their precision",
    39: "failure analysis of incorrect results",
    40: "study limitations",
    41: "implications for practice, intended use and clinical role",
    42: "reference to the full study protocol",
    43: "availability of software, trained model and data",
    44: "sources of funding",
}
# The items each section of the card answers; the rest only the authors can answer.
SECTION_ITEMS = {
    "intended_use": (3, 41),
    "data": (7, 8, 9, 10, 12, 19, 20, 35, 36),
    "model": (22, 24, 27),
    "training": (23, 25, 26),
    "evaluation": (28, 29, 30, 31, 32, 33, 37, 38, 39),
    "limitations": (40,),
    "provenance": (43,),
}
AUTHORS_ONLY = sorted(
    set(CLAIM_2024) - {item for items in SECTION_ITEMS.values() for item in items}
)
SECTION_TITLES = {
    "intended_use": "Intended use",
    "data": "Data",
    "model": "Model",
    "training": "Training",
    "evaluation": "Evaluation",
    "limitations": "Limitations",
    "provenance": "Provenance",
}
# Packages whose versions decide the numbers (training and evaluation)
PACKAGES = ("medcls", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "dvc")
# A limitation is stated when a number crosses these lines: an AUC this much lower than the test
# AUC is a gap a reader must know of; an ECE above this makes probabilities unfit to read as risks;
# a test split this small gives intervals too wide to rank models.
AUC_GAP = 0.05
ECE_LIMIT = 0.05
SMALL_TEST = 100
# The params that make the trained model what it is; a change of any of them is another model.
MODEL_KEYS = (
    "classes", "image_size", "roi", "backbone", "head", "loss", "class_weight", "augment", "train",
)  # fmt: skip


@dataclass(frozen=True)
class CardInputs:
    """What the card quotes besides the evaluation: the files the upstream stages wrote and the
    environment of the run."""

    sources: Mapping  # data/sources/<name>/fetch.json: every source with its fingerprint
    split: pd.DataFrame  # data/split/<name>.csv
    rejected: pd.DataFrame  # data/manifest/<name>_rejected.csv
    training: Mapping  # reports/<name>_train.json
    provenance: Mapping  # git commit, dvc.lock hashes
    software: Mapping  # package versions, Python, platform


def _git_commit() -> str | None:
    shown = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return shown.stdout.strip() if shown.returncode == 0 else None


def lock_hashes(lock: Mapping, name: str) -> dict:
    """`{stage: {path: md5}}` of the outputs dvc.lock records for this model's data and training
    stages (download, manifest, split, roi, train)."""
    stages = lock.get("stages", {}) if isinstance(lock, Mapping) else {}
    hashes = {}
    for stage in ("download", "manifest", "split", "roi", "train"):
        entry = stages.get(f"{stage}@{name}", {})
        outputs = {
            out["path"]: out.get("md5")
            for out in entry.get("outs", [])
            if isinstance(out, Mapping) and "path" in out
        }
        if outputs:
            hashes[f"{stage}@{name}"] = outputs
    return hashes


def _versions() -> dict:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def input_files(paths: DatasetPaths) -> dict[str, Path]:
    """The pipeline files the card quotes, by what they hold: each is a dep of the evaluate stage
    in dvc.yaml (dvc.lock, which records the stages' hashes, cannot be one)."""
    return {
        "sources": paths.source_record("fetch"),
        "split": paths.split,
        "rejected": paths.rejected,
        "training": paths.summary("train"),
    }


def read_inputs(name: str, paths: DatasetPaths, lock_file: Path = Path("dvc.lock")) -> CardInputs:
    """The files and facts the card of dataset `name` quotes (run from the project root)."""
    files = input_files(paths)
    lock = YAML(typ="safe", pure=True).load(lock_file.read_text()) if lock_file.is_file() else {}
    return CardInputs(
        sources=json.loads(files["sources"].read_text()),
        split=pd.read_csv(files["split"], keep_default_na=False),
        rejected=pd.read_csv(files["rejected"], keep_default_na=False),
        training=json.loads(files["training"].read_text()),
        provenance={"git_commit": _git_commit(), "dvc_lock": lock_hashes(lock or {}, name)},
        software=_versions(),
    )


def params_sha256(params: Params, dataset: DatasetParams) -> str:
    """Hash of the params that define the trained model (seeds and learning rates included)."""
    defining = {
        "seed": params.seed,
        "lr": params.lr,
        "fine_tune_lr": params.fine_tune_lr,
        **dataset.model_dump(mode="json", include=set(MODEL_KEYS)),
    }
    return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()


# --- sections ----------------------------------------------------------------------------------


def _counts(split: pd.DataFrame) -> dict:
    """Images, patients (groups) and images per class of every split."""
    return {
        str(name): {
            "images": len(rows),
            "groups": int(rows["group"].nunique()),
            "per_class": {str(k): int(v) for k, v in sorted(Counter(rows["class_name"]).items())},
        }
        for name, rows in split.groupby("split", sort=False)
    }


def data_section(name: str, params: Params, dataset: DatasetParams, inputs: CardInputs) -> dict:
    rejected = inputs.rejected
    by_reason = {str(k): int(v) for k, v in sorted(Counter(rejected["reason"]).items())}
    split_seed = params.seed if params.split.seed is None else params.split.seed
    return {
        "sources": dict(inputs.sources),
        "classes": list(dataset.classes),
        "images": len(inputs.split),
        "rejected": len(rejected),
        "rejected_by_reason": by_reason,
        "splits": _counts(inputs.split),
        "split_method": (
            f"grouped, stratified by class: train {params.split.train:g}, val "
            f"{params.split.val:g}, test {params.split.test:g}, seed {split_seed}"
            + (f"; {params.split.folds} cross-validation folds" if params.split.folds > 1 else "")
            + (
                f"; held out whole to test: {', '.join(dataset.held_out())}"
                if dataset.held_out()
                else ""
            )
        ),
        "patient_grouping": (
            "images of one group (patient, from the layout or the csv group column or pattern) "
            "are never in two splits, nor are identical pixels"
        ),
        "preprocessing": {
            "image_size": dataset.image_size,
            "roi": dataset.roi.model_dump(mode="json"),
        },
    }


def model_section(params: Params, dataset: DatasetParams) -> dict:
    return {
        "backbone": dataset.backbone.model_dump(mode="json"),
        "head": dataset.head.model_dump(mode="json"),
        "loss": dataset.loss.model_dump(mode="json"),
        "params_sha256": params_sha256(params, dataset),
        "ensemble": (
            f"mean probability of {params.split.folds} fold models"
            if params.split.folds > 1
            else "none: one model"
        ),
    }


def training_section(params: Params, dataset: DatasetParams, inputs: CardInputs) -> dict:
    phases = inputs.training.get("phases", {})
    return {
        "phases": phases,
        "epochs_run": sum(phase.get("epochs_run", 0) for phase in phases.values()),
        "final_model": "the phase with the best validation AUC, at its early-stopping epoch",
        "train_images": inputs.training.get("train_images"),
        "seed": params.seed,
        "split_seed": params.split.seed if params.split.seed is not None else params.seed,
        "deterministic": dataset.train.deterministic,
        "hardware": {
            "precision_policy": inputs.training.get("precision_policy"),
            "replicas": inputs.training.get("replicas"),
        },
        "seconds": inputs.training.get("seconds"),
        "augment": dataset.augment.model_dump(mode="json", exclude_defaults=True),
        "software": dict(inputs.software),
    }


def evaluation_section(headline: Mapping, details: Mapping) -> dict:
    """The headline metrics as written, and the evaluation's subgroups, calibration and baseline
    objects as they are: quoted, not recomputed."""
    section = {"headline": headline}
    for key in ("subgroups", "calibration", "cases"):
        if key in details:
            section[key] = details[key]
    if "baseline" in details:
        section["baseline"] = {key: details["baseline"][key] for key in ("method", "test")}
    if "versus_baseline" in details:
        section["versus_baseline"] = details["versus_baseline"]["test"]
    return section


def _gap(reference: object, value: object) -> float | None:
    numbers = all(isinstance(number, int | float) for number in (reference, value))
    return reference - value if numbers else None


def limitations(headline: Mapping, details: Mapping) -> list[str]:
    """What the numbers say the model cannot be trusted with, one sentence each."""
    test = headline.get("test", {})
    found = []
    if isinstance(test.get("n"), int) and test["n"] < SMALL_TEST:
        found.append(
            f"The test split has {test['n']} images (fewer than {SMALL_TEST}): its intervals are "
            "wide; read the interval, not the point estimate."
        )
    for scored, groups in details.get("subgroups", {}).items():
        for subgroup, values in groups.items():
            for value, group in values.items():
                where = f"{subgroup} = {value} ({scored})"
                if not group.get("scored", True):
                    found.append(
                        f"{where}: {group['n']} images, too few to score ({group['too_small']})."
                    )
                    continue
                reference = _section(headline, scored).get("auc")
                gap = _gap(reference, group.get("auc"))
                if gap is not None and gap > AUC_GAP:
                    found.append(
                        f"{where}: AUC {group['auc']:.3f}, {gap:.3f} below the {scored} AUC "
                        f"{reference:.3f}."
                    )
    for other, scores in headline.get("external", {}).items():
        gap = _gap(test.get("auc"), scores.get("auc"))
        if gap is not None and gap > AUC_GAP:
            found.append(
                f"On the external test set {other}, AUC falls to {scores['auc']:.3f} from "
                f"{test['auc']:.3f} on test ({gap:.3f} lower): expect lower performance on "
                "other sources."
            )
    ece = test.get("ece")
    if isinstance(ece, int | float) and ece > ECE_LIMIT:
        found.append(
            f"Calibration error (ECE) {ece:.3f} on test exceeds {ECE_LIMIT}: read the "
            "probabilities as scores, not as risks."
        )
    low, high = test.get("vs_baseline_low"), test.get("vs_baseline_high")
    if isinstance(low, int | float) and isinstance(high, int | float) and low <= 0:
        found.append(
            f"The paired AUC difference to the baseline is {test['vs_baseline']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}]: no evidence that the model beats frozen features with "
            "logistic regression."
        )
    return found


def _section(headline: Mapping, split: str) -> Mapping:
    """The headline object of a scored split: `test`, or `external:<set>` under external."""
    key, _, other = split.partition(":")
    return headline.get(key, {}).get(other, {}) if other else headline.get(key, {})


def model_card(
    name: str,
    params: Params,
    dataset: DatasetParams,
    headline: Mapping,
    details: Mapping,
    inputs: CardInputs,
) -> dict:
    """The card of dataset `name`'s model: `headline` is the headline metrics object as written,
    `details` the evaluation document (its subgroups, calibration, baseline and cases sections are
    quoted)."""
    sections = {
        "intended_use": dataset.evaluate.card.model_dump(mode="json"),
        "data": data_section(name, params, dataset, inputs),
        "model": model_section(params, dataset),
        "training": training_section(params, dataset, inputs),
        "evaluation": evaluation_section(headline, details),
        "limitations": limitations(headline, details),
        "provenance": dict(inputs.provenance),
    }
    return {
        "dataset": name,
        **sections,
        "claim_2024": {
            "answered": {key: list(items) for key, items in SECTION_ITEMS.items()},
            "authors_only": {str(item): CLAIM_2024[item] for item in AUTHORS_ONLY},
        },
    }


# --- Markdown ----------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A scalar as the card shows it: floats to four significant digits, null as n/a."""
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _bullets(value: object, depth: int = 0) -> list[str]:
    """Nested mappings and lists as indented bullets, scalars inline."""
    indent = "  " * depth
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines += [f"{indent}- {key}:", *_bullets(item, depth + 1)]
            else:
                lines.append(f"{indent}- {key}: {_text(item) if item != {} else 'none'}")
        return lines
    if isinstance(value, list):
        if all(not isinstance(item, Mapping | list) for item in value):
            return [f"{indent}- {', '.join(map(_text, value))}"]
        return [line for item in value for line in _bullets(item, depth)]
    return [f"{indent}- {_text(value)}"]


def evaluation_markdown(evaluation: Mapping) -> list[str]:
    """The headline metrics one per line (as DVC names them), the subgroups as a table, the
    cases by id, and the other quoted objects as bullets."""
    lines = ["Headline metrics (`metrics/<name>.json`):", ""]
    lines += [f"- {key}: {_text(value)}" for key, value in flattened(evaluation["headline"])]
    if "subgroups" in evaluation:
        lines += ["", "Subgroups:", "", *subgroups.markdown(evaluation["subgroups"])]
    for kind, cases in evaluation.get("cases", {}).items():
        listed = ", ".join(f"`{case['id']}` (p = {case['probability']:.3f})" for case in cases)
        lines += ["", f"{kind.replace('_', ' ').capitalize()} on test: {listed or 'none'}."]
    for key in ("calibration", "baseline", "versus_baseline"):
        if key in evaluation:
            lines += ["", f"{key.replace('_', ' ').capitalize()}:", "", *_bullets(evaluation[key])]
    return lines


def card_markdown(card: Mapping) -> str:
    """The card as Markdown: one heading per section with the CLAIM 2024 items it answers."""
    lines = [f"# Model card: {card['dataset']}", ""]
    lines.append(
        "Written by the evaluate stage from the files the pipeline wrote; every number is quoted "
        "from them. CLAIM 2024: the checklist items (Tejani et al. 2024) each section answers."
    )
    for key, title in SECTION_TITLES.items():
        items = ", ".join(str(item) for item in SECTION_ITEMS[key])
        lines += ["", f"## {title}", "", f"CLAIM 2024 items {items}.", ""]
        content = card[key]
        if key == "limitations":
            lines += [f"- {sentence}" for sentence in content] or ["- none found in the numbers"]
        elif key == "evaluation":
            lines += evaluation_markdown(content)
        else:
            lines += _bullets(content)
    lines += ["", "## Only the authors can answer", ""]
    lines.append(
        "These CLAIM 2024 items need knowledge the pipeline does not have (how and from whom the "
        "data were collected, the reference standard, the study design):"
    )
    lines.append("")
    lines += [f"- {item}: {topic}" for item, topic in card["claim_2024"]["authors_only"].items()]
    return "\n".join(lines) + "\n"
