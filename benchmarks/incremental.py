"""Incremental runs: seconds per stage of a first `dvc repro`, then of `dvc exp run -S lr=...`.

The experiment changes a training param only, so DVC must skip download, manifest, split and roi
(their dvc.lock entries still match) and re-run train and evaluate alone; validate and source run
on every repro (they check the params and fingerprint the dataset source), and their seconds count
as data-stage time.

    python -m benchmarks.incremental [--lr 3e-4]

Runs in a temporary git + DVC workspace (medcls.demo.workspace) on small generated data: the synthetic
demo's profile (profiles/demo.yaml, scripts/demo.py's generators) with one epoch per phase. A
stage's seconds run from its "Running stage" line in DVC's output to the next stage's line (or the
end); "skipped" is a stage DVC reported unchanged. Needs no ../shared.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from benchmarks.common import PROJECT, machine, print_table
from medcls.demo.workspace import command_environment, create_workspace, run_in
from medcls.params import validate
from scripts.demo import generate_sources

STAGE_EVENTS = (  # pattern of a DVC output line -> whether the stage it names runs
    (re.compile(r"Running stage '([^']+)'"), True),
    (re.compile(r"Stage '([^']+)' didn't change, skipping"), False),
)
DATA_STAGES = ("validate", "source", "download", "manifest", "split", "roi")


def timed_stages(workspace: Path, *command: str) -> tuple[dict[str, float | None], float]:
    """(seconds per stage, None for a skipped one; the command's seconds), from when each line
    of the command's output arrived."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=workspace,
        env=command_environment() | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    events, output = [], []
    for line in process.stdout:
        output.append(line)
        for pattern, runs in STAGE_EVENTS:
            if match := pattern.search(line):
                events.append((time.perf_counter(), match.group(1), runs))
    ended = time.perf_counter()
    if process.wait():
        sys.exit(f"`{' '.join(command)}` failed:\n{''.join(output)}")
    ends = [moment for moment, _, _ in events[1:]] + [ended]
    seconds = {
        stage: end - moment if runs else None
        for (moment, stage, runs), end in zip(events, ends, strict=True)
    }
    return seconds, ended - started


def demo_params(epochs: int) -> dict:
    """The demo profile with `epochs` per training phase."""
    params = YAML(typ="safe", pure=True).load((PROJECT / "profiles" / "demo.yaml").read_text())
    for dataset in params["datasets"].values():
        dataset["train"]["epochs"] = epochs
        dataset["train"]["fine_tune"]["epochs"] = epochs
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", default="3e-4", help="the experiment's learning rate")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training phase")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    params = demo_params(args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch) / "workspace"
        generate_sources(validate(params), workspace)
        create_workspace(workspace, params, message="benchmark workspace")
        first, first_total = timed_stages(workspace, "dvc", "repro")
        run_in(workspace, "git", "add", "-A")
        run_in(workspace, "git", "commit", "-qm", "first run")
        experiment, experiment_total = timed_stages(
            workspace, "dvc", "exp", "run", "-S", f"lr={args.lr}"
        )
    rows = [[stage, seconds, _shown(experiment.get(stage))] for stage, seconds in first.items()]
    rows.append(["whole command", first_total, experiment_total])
    print_table(["stage", "dvc repro s", f"dvc exp run -S lr={args.lr} s"], rows)
    data_seconds = sum(
        seconds or 0.0
        for stage, seconds in experiment.items()
        if stage.split("@")[0] in DATA_STAGES
    )
    print(f"seconds in {', '.join(DATA_STAGES)} during the experiment: {data_seconds:.1f}")


def _shown(seconds: float | None) -> float | str:
    return "skipped" if seconds is None else seconds


if __name__ == "__main__":
    main()
