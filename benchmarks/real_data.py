"""Real-data runs: the offline profile on ../shared's BUSI and Kermany sets, in a DVC
workspace of its own, then the results table printed from the evaluation reports the pipeline wrote.

    python -m benchmarks.real_data                       # every dataset of the profile
    python -m benchmarks.real_data --datasets busi       # one of them; rerun to add the others
    python -m benchmarks.real_data --table-only          # print the table of an earlier run

The workspace (default: ../real-data-runs) is a git + DVC repository, so a rerun reuses what is up
to date and `dvc metrics show` works in it. Skips with a message when ../shared is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML

from medcls.demo.workspace import (
    PROJECT,
    command_environment,
    create_workspace,
    run_in,
    write_pipeline,
)
from medcls.evaluation.paired import auc_verdict, difference_text
from medcls.pipeline.paths import DatasetPaths

SHARED = PROJECT.parent / "shared"
WORKSPACE = PROJECT.parent / "real-data-runs"  # the benchmarks' git + DVC workspace, kept between runs
PROFILE = PROJECT / "profiles" / "offline-shared.yaml"
TIMINGS = "repro_seconds.json"
UP_TO_DATE_SECONDS = 60  # a rerun that only checks stages; it keeps the earlier full run's time


def resolved_profile(datasets: list[str] | None) -> dict:
    """The profile with its relative data and weights paths made absolute (they are relative to the
    project root) and, when asked, only some of its datasets (with the test-only datasets they are
    evaluated on)."""
    params = YAML(typ="safe", pure=True).load(PROFILE.read_text())
    if datasets:
        unknown = sorted(set(datasets) - set(params["datasets"]))
        if unknown:
            sys.exit(f"error: {unknown} not in {PROFILE.name}; it has {list(params['datasets'])}")
        external = [
            other
            for name in datasets
            for other in params["datasets"][name].get("evaluate", {}).get("external", [])
        ]
        params["datasets"] = {
            name: dataset for name, dataset in params["datasets"].items() if name in {*datasets, *external}
        }
    for dataset in params["datasets"].values():
        dataset["source"] = str((PROJECT / dataset["source"]).resolve())
        if "path" in dataset.get("backbone", {}):
            dataset["backbone"]["path"] = str((PROJECT / dataset["backbone"]["path"]).resolve())
    params["trained"] = trained(params)
    return params


def trained(params: dict) -> list[str]:
    """The datasets with a model: every one that is not only tested on."""
    return [name for name, dataset in params["datasets"].items() if not dataset.get("test_only")]


def prepare(workspace: Path, params: dict) -> None:
    """A git + DVC workspace holding the current pipeline code and `params`."""
    if (workspace / ".git").exists():
        write_pipeline(workspace, params)
    else:
        create_workspace(workspace, params, message="real-data workspace")


def reproduce(workspace: Path, names: list[str]) -> None:
    """`dvc repro` per dataset (its output streamed), committed; the wall time of each is kept in
    the workspace's repro_seconds.json for the table (0 when DVC found everything up to date)."""
    timings_file = workspace / TIMINGS
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    for name in names:
        started = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", f"evaluate@{name}"], cwd=workspace, env=command_environment(), check=True
        )
        seconds = time.perf_counter() - started
        print(f"{name}: dvc repro took {seconds / 60:.1f} min")
        if seconds > UP_TO_DATE_SECONDS or name not in timings:
            timings[name] = round(seconds)
        timings_file.write_text(json.dumps(timings, indent=2) + "\n")
        run_in(workspace, "git", "add", "-A")
        run_in(workspace, "git", "commit", "-qm", f"{name}: dvc repro", "--allow-empty")


def shared_missing() -> bool:
    """Whether ../shared is absent (a user's clone), said in one line: the benchmark then skips."""
    if SHARED.is_dir():
        return False
    print(f"skipped: {SHARED} not found (the real data and weights live there)")
    return True


def interval_text(values: list | None) -> str:
    return "–" if not values or None in values else f"[{values[0]:.3f}, {values[1]:.3f}]"


def number_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _external(scores: dict) -> str:
    """Each external test set's AUC with its (patient-grouped) interval, or "–"."""
    external = scores.get("external", {})
    return "; ".join(
        f"{other}: {number_text(split['auc'])} {interval_text(split['auc_ci95'])}"
        for other, split in sorted(external.items())
    ) or "–"


def _paired(document: dict) -> str:
    """The model − baseline test AUC difference with its interval and verdict, or "–"."""
    pair = document.get("versus_baseline", {}).get("test")
    if not pair:
        return "–"
    verdict = auc_verdict(
        pair["auc_difference_ci95"], "model better", "baseline better", "no evidence of a difference"
    )
    return f"{difference_text(pair['auc_difference'], pair['auc_difference_ci95'])}: {verdict}"


def table(workspace: Path, params: dict) -> str:
    """A Markdown row per dataset and per model (trained classifier and baseline), test split, with
    the paired model − baseline AUC difference on the classifier's row."""
    lines = [
        "| dataset | backbone | model | test AUC [95 % CI] | sensitivity | specificity | accuracy "
        "| model − baseline AUC (paired) | external test AUC [95 % CI] | train stage | whole pipeline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    timings_file = workspace / TIMINGS
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    for name in trained(params):
        dataset = params["datasets"][name]
        paths = DatasetPaths(name)
        evaluation_file = workspace / paths.evaluation
        if not evaluation_file.exists():
            continue
        document = json.loads(evaluation_file.read_text())
        training = json.loads((workspace / paths.summary("train")).read_text())
        backbone = dataset["backbone"].get("name") or Path(dataset["backbone"]["path"]).stem
        pipeline = f"{timings[name] / 60:.0f} min" if name in timings else "–"
        models = [
            ("classifier", document, _paired(document), f"{training['seconds'] / 60:.1f} min", pipeline)
        ]
        if "cross_validation" in document:
            ensemble = {
                "test": document["ensemble_test"],
                "external": document.get("ensemble_external", {}),
            }
            folds = document["cross_validation"]["folds"]
            models.append((f"ensemble of the {folds} fold models", ensemble, "", "–", "–"))
        if "baseline" in document:
            models.append(("baseline (frozen features + LR)", document["baseline"], "", "–", "–"))
        for model, scores, paired, train_time, pipeline_time in models:
            test = scores["test"]
            lines.append(
                f"| {name} | {backbone} | {model} | {number_text(test['auc'])} {interval_text(test['auc_ci95'])}"
                f" | {number_text(test['sensitivity'])} | {number_text(test['specificity'])}"
                f" | {number_text(test['accuracy'])} | {paired} | {_external(scores)}"
                f" | {train_time} | {pipeline_time} |"
            )
    return "\n".join(lines)


def _rate(group: dict, key: str) -> str:
    return f"{number_text(group[key])} {interval_text(group[key + '_ci95'])}"


def subgroup_tables(workspace: Path, params: dict) -> str:
    """A Markdown table per dataset with `evaluate.subgroups`: each subgroup of each scored split
    (test, external sets) with n, AUC, sensitivity and specificity at the model's threshold and
    their patient-grouped intervals; a group below the size limit says so instead."""
    lines = []
    for name in trained(params):
        evaluation_file = workspace / DatasetPaths(name).evaluation
        if not evaluation_file.exists():
            continue
        subgroups = json.loads(evaluation_file.read_text()).get("subgroups") or {}
        if subgroups:
            lines += [
                "",
                f"{name}: subgroups (the model, at its validation threshold)",
                "",
                "| split | column | group | images | AUC [95 % CI] | sensitivity [95 % CI] "
                "| specificity [95 % CI] |",
                "|---|---|---|---|---|---|---|",
            ]
        for split, columns in subgroups.items():
            for column, groups in columns.items():
                for group_name, group in groups.items():
                    if group.get("scored"):
                        scores = " | ".join(
                            _rate(group, key) for key in ("auc", "sensitivity", "specificity")
                        )
                    else:
                        scores = f"not scored: {group.get('too_small', 'too small')} | | "
                    lines.append(
                        f"| {split} | {column} | {group_name} | {group['n']} | {scores} |"
                    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", help="profile entries to run (default: all)")
    parser.add_argument("--workspace", type=Path, default=WORKSPACE)
    parser.add_argument("--table-only", action="store_true", help="print the table of an earlier run")
    args = parser.parse_args()
    if shared_missing():
        return
    workspace = args.workspace.resolve()
    params = resolved_profile(args.datasets)
    if not args.table_only:
        existing = workspace / "params.yaml"
        if existing.exists():  # keep datasets of earlier runs so their results stay in the table
            earlier = YAML(typ="safe", pure=True).load(existing.read_text())["datasets"]
            params["datasets"] = earlier | params["datasets"]
            params["trained"] = trained(params)
        prepare(workspace, params)
        reproduce(workspace, [name for name in args.datasets or params["trained"] if name in params["trained"]])
    print(table(workspace, params))
    print(subgroup_tables(workspace, params))


if __name__ == "__main__":
    main()
