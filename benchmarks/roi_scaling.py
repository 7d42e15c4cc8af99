"""ROI cropping and TFRecord writing (the roi stage): one worker against every core, and peak memory.

For ../shared's BUSI (bus_uc's ROI params: mask crop at 224 px) and Kermany (chest_xray's: 150 px),
the real `python -m stages.roi` runs in a fresh process per measurement, with `workers` 1 and then
0 (every core), on half and on all of the images. Each run reports its own peak RSS
(the stage process, and its largest child process: a worker).

- speed-up: whole stage at the larger size (interpreter imports and the sample figure included),
  and per image, from the time the extra images took (fixed costs cancel). Target: >= 1.7x on 2 cores.
- memory: peak RSS at the two sizes; flat means it does not grow with the dataset.

    python -m benchmarks.roi_scaling [--limit N] [--repeats 3]  # N images per dataset at most

Skips without ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from benchmarks.common import (
    PROJECT,
    SEED,
    machine,
    print_table,
    project_params,
    skip_unless_shared,
    stopwatch,
)
from benchmarks.data import BUSI_CLASSES, split_rows

# The stage as `python -m stages.roi <name>` runs it (spawned workers re-import it the same way),
# followed by peak RSS in MiB: its own, and that of its largest worker. A worker's peak is its
# VmHWM, polled once the worker runs (until its exec a child shows the parent's pages and command
# line, which is also why getrusage's figure for children measures the parent, not the workers).
MEASURED_STAGE = """\
import json, resource, runpy, threading, time
from pathlib import Path

child_peaks = {}

def watch_children():
    while True:
        for listing in Path("/proc/self/task").glob("*/children"):
            for pid in listing.read_text().split():
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\\0").split(b"\\0")
                    if argv[-1] != b"--multiprocessing-fork":  # not (yet) a worker
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kib = int(status.split("VmHWM:")[1].split()[0])
                child_peaks[pid] = max(kib, child_peaks.get(pid, 0))
        time.sleep(0.05)

threading.Thread(target=watch_children, daemon=True).start()
runpy.run_module("stages.roi", run_name="__main__", alter_sys=True)
print(json.dumps({"SELF": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "CHILDREN": max(child_peaks.values(), default=0) / 1024}))
"""


def datasets(params: dict) -> dict[str, tuple[Path, dict]]:
    """name -> (raw dir, dataset params): BUSI with bus_uc's params, Kermany with chest_xray's."""
    busi = params["datasets"]["bus_uc"] | {"layout": "busi", "classes": BUSI_CLASSES}
    return {
        "busi": (skip_unless_shared("data", "busi"), busi),
        "chest_xray": (skip_unless_shared("data", "chest_xray"), params["datasets"]["chest_xray"]),
    }


def run_stage(workspace: Path, name: str, rows: pd.DataFrame, params: dict, workers: int) -> dict:
    """Seconds and peak RSS of the roi stage on `rows` in `workspace` with `workers`."""
    with (workspace / "params.yaml").open("w") as stream:
        YAML().dump(params | {"workers": workers}, stream)
    rows.to_csv(workspace / "data" / "split" / f"{name}.csv", index=False)
    env = dict(os.environ, PYTHONPATH=str(PROJECT), TF_CPP_MIN_LOG_LEVEL="2")
    with stopwatch() as elapsed:
        result = subprocess.run(
            [sys.executable, "-c", MEASURED_STAGE, name],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        sys.exit(f"roi stage failed:\n{result.stdout}{result.stderr}")
    peak = json.loads(result.stdout.strip().splitlines()[-1])
    return {"seconds": elapsed(), "stage MiB": peak["SELF"], "worker MiB": peak["CHILDREN"]}


def measure(name: str, raw_dir: Path, dataset: dict, limit: int | None, repeats: int) -> list[list]:
    """Table rows for one dataset: every (size, workers) run, best of `repeats` (memory: the
    largest), then the speed-ups."""
    cores = len(os.sched_getaffinity(0))
    rows = split_rows(raw_dir, dataset["layout"], dataset["classes"], limit)
    sizes = (len(rows) // 2, len(rows))
    params = project_params().model_dump() | {"datasets": {name: dataset}, "trained": [name]}
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        (workspace / "data" / "split").mkdir(parents=True)
        (workspace / "data" / "raw").mkdir()
        (workspace / "data" / "raw" / name).symlink_to(raw_dir.resolve())
        for size in sizes:
            subset = rows.sample(size, random_state=SEED) if size < len(rows) else rows
            for workers in (1, cores):
                runs = [
                    run_stage(workspace, name, subset, params, 0 if workers == cores else 1)
                    for _ in range(repeats)
                ]
                results[size, workers] = {
                    key: (min if key == "seconds" else max)(run[key] for run in runs)
                    for key in runs[0]
                }
                print(f"{name}: {size} images, {workers} worker(s): {results[size, workers]}")
    table = [[name, size, workers, *result.values()] for (size, workers), result in results.items()]
    small, large = sizes
    whole = results[large, 1]["seconds"] / results[large, cores]["seconds"]
    per_image = {
        workers: (results[large, workers]["seconds"] - results[small, workers]["seconds"])
        / (large - small)
        for workers in (1, cores)
    }
    speed_up = [f"whole stage {whole:.2f}x", f"per image {per_image[1] / per_image[cores]:.2f}x"]
    return [*table, [name, large, f"speed-up 1 -> {cores}", *speed_up, ""]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, help="at most this many images per dataset")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args()
    params = project_params().model_dump()  # plain values, written as the workspace's params.yaml
    print(f"machine: {machine()}")
    table = []
    for name, (raw_dir, dataset) in datasets(params).items():
        table += measure(name, raw_dir, dataset, args.limit, args.repeats)
    print_table(["dataset", "images", "workers", "seconds", "stage MiB", "worker MiB"], table)


if __name__ == "__main__":
    main()
