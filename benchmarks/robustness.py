"""Robustness variants: busi's recipe changed one params set at a time, each measured on
BUSI's validation and test splits and on the external set of another hospital (bus_uclm_dev).

    python -m benchmarks.robustness                        # every variant of robustness.yaml
    python -m benchmarks.robustness --variants reference   # some of them
    python -m benchmarks.robustness --table-only           # the table of earlier runs
    python -m benchmarks.robustness --ensemble augment_both_phases seed_1 seed_2 seed_3
                                                           # the mean of measured variants' models

Runs in the real-data workspace (default ../real-data-runs, shared with `benchmarks.real_data`, whose
cached data and models it reuses): per variant, the profile plus the variant's params, `dvc repro
evaluate@busi`, the metrics kept in the workspace's robustness/<variant>.json and its predictions in
robustness/<variant>.predictions.csv (`benchmarks.real_data` writes the plain profile back when it
runs). Skips without ../shared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from benchmarks import real_data
from benchmarks.real_data import interval_text, number_text, prepare, resolved_profile
from medcls.demo.workspace import PROJECT, command_environment, run_in
from medcls.evaluation import paired, splits
from medcls.params import validate
from medcls.pipeline.paths import DatasetPaths

DATASET = "busi"
EXTERNAL = "bus_uclm_dev"
VARIANTS = Path(__file__).with_name("robustness.yaml")
RESULTS = "robustness"


def with_changes(params: dict, changes: dict) -> dict:
    """`params` with each dotted key of `changes` set (the last key replaced whole, or added: the
    pipeline's params validation rejects a misspelt one)."""
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return params


def run_variant(workspace: Path, name: str, changes: dict) -> None:
    """`dvc repro evaluate@busi` with the variant's params; its metrics to robustness/<name>.json,
    its predictions beside them."""
    commit = run_in(PROJECT, "git", "describe", "--always", "--dirty").strip()  # the code copied
    prepare(workspace, with_changes(resolved_profile([DATASET]), changes))
    started = time.perf_counter()
    subprocess.run(
        ["dvc", "repro", f"evaluate@{DATASET}"], cwd=workspace, env=command_environment(), check=True
    )
    seconds = time.perf_counter() - started
    paths = DatasetPaths(DATASET)
    train = json.loads((workspace / paths.summary("train")).read_text())
    record = {
        "commit": commit,
        "changes": changes,
        "repro_seconds": round(seconds),
        "train_seconds": train["seconds"],
        "metrics": json.loads((workspace / paths.evaluation).read_text()),
    }
    (workspace / RESULTS).mkdir(exist_ok=True)
    (workspace / RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.copy(workspace / "params.yaml", workspace / RESULTS / f"{name}.params.yaml")
    predictions = workspace / "data" / "predictions" / f"{DATASET}.csv"  # for paired comparisons
    shutil.copy(predictions, workspace / RESULTS / f"{name}.predictions.csv")
    run_in(workspace, "git", "add", "-A")
    run_in(workspace, "git", "commit", "-qm", f"robustness: {name}", "--allow-empty")
    print(f"{name}: dvc repro took {seconds / 60:.1f} min")


def _auc(scores: dict | None) -> str:
    scores = scores or {}
    return f"{number_text(scores.get('auc'))} {interval_text(scores.get('auc_ci95'))}"


def _rate(scores: dict | None, key: str) -> str:
    return number_text((scores or {}).get(key))


def _calibration(scores: dict | None) -> str:
    return f"{_rate(scores, 'ece')} / {_rate(scores, 'brier')}"


def scorers(document: dict) -> tuple[dict | None, dict, dict | None]:
    """The (validation, test, external) scores of a variant: its fold ensemble's (out-of-fold for
    validation) when it was cross-validated, else the single model's."""
    if splits.ENSEMBLE_TEST in document:
        external = document.get("ensemble_external", {}).get(EXTERNAL)
        return document[splits.OUT_OF_FOLD], document[splits.ENSEMBLE_TEST], external
    return document.get("val"), document["test"], document.get("external", {}).get(EXTERNAL)


def table(workspace: Path, variants: dict) -> str:
    """A Markdown row per measured variant: validation (out-of-fold for a fold ensemble), test and
    external AUC with 95 % intervals (the external one resampling patients), the external
    sensitivity/specificity at the validation threshold, and calibration (ECE, Brier score)."""
    lines = [
        "| variant | what changed | val AUC | test AUC | external AUC | external sens / spec "
        "| ECE / Brier, test | ECE / Brier, external | train stage | commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, variant in variants.items():
        result_file = workspace / RESULTS / f"{name}.json"
        if not result_file.exists():
            continue
        result = json.loads(result_file.read_text())
        validation, test, external = scorers(result["metrics"])
        lines.append(
            f"| {name} | {variant['why']} | {_auc(validation)} | {_auc(test)} | {_auc(external)} "
            f"| {_rate(external, 'sensitivity')} / {_rate(external, 'specificity')} "
            f"| {_calibration(test)} | {_calibration(external)} "
            f"| {result['train_seconds'] / 60:.1f} min | {result.get('commit', '–')} |"
        )
    return "\n".join(lines)


def ensemble(workspace: Path, names: list[str]) -> str:
    """Markdown rows for the mean probability of measured variants' models (e.g. one recipe's
    training seeds), scored as the pipeline scores one model: threshold chosen on the ensemble's
    val, intervals and paired differences against the first variant by the same bootstrap, the
    external ones resampling patients. Reads their kept predictions; trains nothing."""
    params = validate(
        YAML(typ="safe", pure=True).load((workspace / RESULTS / f"{names[0]}.params.yaml").read_text())
    )
    settings, seed = params.dataset(DATASET).evaluate, params.seed
    keys = ["split", "id", "label"]
    merged = None
    for index, name in enumerate(names):
        rows = pd.read_csv(workspace / RESULTS / f"{name}.predictions.csv")[keys + ["probability"]]
        rows = rows.rename(columns={"probability": f"p{index}"})
        merged = rows if merged is None else merged.merge(rows, on=keys, validate="one_to_one")
    members = [f"p{index}" for index in range(len(names))]
    merged["probability"] = merged[members].mean(axis=1)
    patients = pd.read_csv(workspace / "data" / "manifest" / f"{EXTERNAL}.csv", keep_default_na=False)
    merged["group"] = merged["id"].map(patients.set_index("path")["group"])
    document = splits.evaluate_predictions(
        merged, rule=settings.threshold, n_bootstrap=settings.bootstrap, seed=seed
    )
    external = splits.external_metrics(
        merged, document["threshold"], [EXTERNAL], images="all", n_bootstrap=settings.bootstrap,
        seed=seed, by_group=True,
    )[EXTERNAL]
    lines = [
        f"ensemble of {', '.join(names)} (threshold {document['threshold']:.3f} on its val)",
        "| | val AUC | test AUC | external AUC | external sens / spec |",
        "|---|---|---|---|---|",
        f"| ensemble | {_auc(document['val'])} | {_auc(document['test'])} | {_auc(external)} "
        f"| {_rate(external, 'sensitivity')} / {_rate(external, 'specificity')} |",
    ]
    differences = []
    for split in ("val", "test", splits.external_split(EXTERNAL)):
        rows = merged[merged["split"] == split]
        pair = paired.paired_auc_difference(
            rows["label"], rows["probability"], rows["p0"], n_resamples=settings.bootstrap, seed=seed,
            groups=rows["group"] if split == splits.external_split(EXTERNAL) else None,
        )
        differences.append(
            paired.difference_text(pair["auc_difference"], pair["auc_difference_ci95"])
        )
    lines.append(f"| minus {names[0]} (paired) | {' | '.join(differences)} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", help="names in robustness.yaml (default: all)")
    parser.add_argument("--workspace", type=Path, default=real_data.WORKSPACE)
    parser.add_argument("--table-only", action="store_true", help="print the table of earlier runs")
    parser.add_argument(
        "--ensemble", nargs="+", metavar="VARIANT", help="score the mean of these measured variants"
    )
    args = parser.parse_args()
    if real_data.shared_missing():
        return
    variants = YAML(typ="safe", pure=True).load(VARIANTS.read_text())
    unknown = sorted(set(args.variants or []) - set(variants))
    if unknown:
        raise SystemExit(f"error: {unknown} not in {VARIANTS.name}; it has {list(variants)}")
    workspace = args.workspace.resolve()
    if args.ensemble:
        print(ensemble(workspace, args.ensemble))
        return
    if not args.table_only:
        for name in args.variants or variants:
            run_variant(workspace, name, variants[name]["set"])
    print(table(workspace, variants))


if __name__ == "__main__":
    main()
