"""Offline demo: the whole pipeline on small SYNTHETIC datasets, on a CPU, in a few minutes.

    make demo                      # or, from the project root: python -m scripts.demo

Generates stand-ins for BUS_UC and Kermany's chest X-rays with medcls/demo/synthetic.py (the generators the
tests use), creates a pipeline workspace in demo/workspace with profiles/demo.yaml as its params.yaml,
runs `dvc repro` there and commits the result. The metrics and plots are real outputs of the real
code on fake images: they show that the pipeline works, nothing about any medical task. So that they
are never mistaken for results, everything stays in the git-ignored demo/, dataset names start with
`demo_`, and demo/SYNTHETIC_DEMO.txt says what the directory is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML

from medcls.demo import synthetic
from medcls.demo.workspace import PROJECT, command_environment, create_workspace, run_in
from medcls.params import Params, ParamsError, load

PROFILE = PROJECT / "profiles" / "demo.yaml"
DEMO_DIR = PROJECT / "demo"
MARKER = "SYNTHETIC_DEMO.txt"
# Generator per layout: enough images for bootstrap intervals that mean something, small enough
# for a CPU. Each writes the dataset at the path its `source` names.
GENERATORS: dict[str, Callable[[Path], Path]] = {
    "bus_uc": lambda root: synthetic.make_bus_uc(root, n_per_class=60, size=96),
    "kermany": lambda root: synthetic.make_kermany(
        root, n_patients_per_class=30, images_per_patient=3, size=96
    ),
}
MARKER_TEXT = """\
SYNTHETIC DEMO: generated images, not medical data.
Everything here was made by `make demo` (scripts/demo.py) from profiles/demo.yaml; the metrics only
show that the pipeline runs end to end. Delete this directory freely; `make demo` recreates it.
"""


def clear_previous_demo(demo_dir: Path) -> None:
    """Remove an earlier demo, but never a directory the demo did not make."""
    if not demo_dir.exists():
        return
    if not (demo_dir / MARKER).is_file():
        raise FileExistsError(
            f"{demo_dir} exists but holds no {MARKER}; it was not made by the demo, so it is left "
            "alone: move it away or pass --dir"
        )
    shutil.rmtree(demo_dir)


def generate_sources(params: Params, workspace: Path) -> None:
    """Write each source's synthetic images where its `source` (relative to the workspace) points."""
    for dataset in params.datasets.values():
        for source in dataset.named_sources.values():
            if not isinstance(source.layout, str) or source.layout not in GENERATORS:
                raise ParamsError(
                    f"{source.at}.layout: the demo generates {sorted(GENERATORS)} only"
                )
            GENERATORS[source.layout]((workspace / source.source).resolve())


def summary(workspace: Path, names: list[str]) -> str:
    lines = ["", "SYNTHETIC DEMO RESULTS (generated images: these numbers mean nothing medically)"]
    for name in names:
        test = json.loads((workspace / "metrics" / f"{name}.json").read_text())["test"]
        lines.append(
            f"  {name}: test AUC {test['auc']:.3f} at threshold {test['threshold']:.3f} (n = {test['n']})"
        )
    lines += [
        f"Metrics: {workspace / 'metrics'}; plots: {workspace / 'plots'}",
        f"Try: source .venv/bin/activate && cd {workspace} && dvc exp run -n faster-lr -S lr=0.002 && medcls compare main faster-lr",
    ]
    return "\n".join(lines)


def run_demo(demo_dir: Path) -> Path:
    """Build the demo from scratch in `demo_dir`; return the workspace, with its first run committed."""
    params = load(PROFILE)  # validate before any work
    clear_previous_demo(demo_dir)
    demo_dir.mkdir(parents=True)
    (demo_dir / MARKER).write_text(MARKER_TEXT)
    workspace = demo_dir / "workspace"
    generate_sources(params, workspace)
    create_workspace(workspace, YAML().load(PROFILE.read_text()), message="synthetic demo")
    subprocess.run(["dvc", "repro"], cwd=workspace, env=command_environment(), check=True)
    run_in(workspace, "git", "add", "-A")
    run_in(workspace, "git", "commit", "-qm", "synthetic demo: first run")
    print(summary(workspace, list(params.datasets)))
    return workspace


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="demo directory (recreated)")
    try:
        run_demo(parser.parse_args().dir.resolve())
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: `{' '.join(error.cmd)}` failed with exit status {error.returncode}")
    except (ParamsError, FileExistsError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
