"""Rewrite the command outputs shown in the docs from real runs, so that they cannot drift.

A page shows a command's output between two markers; everything between them is replaced:

    <!-- output: medcls predict --help -->
    ```text
    $ medcls predict --help
    (its output, written by this script)
    ```
    <!-- /output -->

Only the commands listed in COMMANDS may appear in a marker (tests/unit/project/test_docs.py checks it). Each runs
with the project's environment either in the project root or in the demo workspace that `make demo`
builds (synthetic images, trained models), so the outputs are real and need no network:

    make demo && python -m scripts.docs_examples [--workspace demo/workspace]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DEMO_IMAGES = "data/raw/demo_bus_uc/BUS_UC/BUS_UC/BUS_UC"

# Each command, and where it runs: "project" (the project root) or "demo" (the demo workspace).
COMMANDS: dict[str, str] = {
    "medcls --help": "project",
    "medcls --version": "project",
    "medcls predict --help": "project",
    "medcls compare --help": "project",
    "dvc stage list": "demo",
    (
        f"medcls predict --dataset demo_bus_uc {DEMO_IMAGES}/Benign/images/004.png "
        f"{DEMO_IMAGES}/Malignant/images/061.png --mask {DEMO_IMAGES}/Benign/masks/004.png "
        f"{DEMO_IMAGES}/Malignant/masks/061.png"
    ): "demo",
}

# The named experiment whose outputs the README's review section shows; made once in the demo.
EXPERIMENT = "faster-lr"
SHOWN_COLUMNS = r"Experiment|lr|.*demo_bus_uc.json:test\.(auc|auc_low|auc_high|sensitivity|specificity)$"
COMMANDS |= {
    f"dvc exp show --md --drop '.*' --keep '{SHOWN_COLUMNS}'": "demo",
    f"medcls compare HEAD {EXPERIMENT}": "demo",
}

BLOCK = re.compile(
    r"(<!-- output: (?P<command>.+?) -->\n)(?P<body>.*?)(<!-- /output -->)", re.DOTALL
)


def documentation_pages(root: Path = PROJECT) -> list[Path]:
    """The pages that may show command outputs: the README and everything under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def shown_commands(text: str) -> list[str]:
    """The commands whose outputs a page shows, in order."""
    return [match["command"] for match in BLOCK.finditer(text)]


def run(command: str, workspace: Path, known: bool = True) -> str:
    """The command's stdout and stderr, as a user would see them (fixed width for --help); a
    command not `known` (not in COMMANDS) runs in the demo workspace."""
    directory = PROJECT if known and COMMANDS[command] == "project" else workspace
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    result = subprocess.run(
        shlex.split(command),
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{command}` in {directory} exited {result.returncode}:\n{result.stdout}"
        )
    return result.stdout


def make_experiment(workspace: Path) -> None:
    """The demo's experiment EXPERIMENT (a higher learning rate), unless it exists already."""
    listed = subprocess.run(
        ["dvc", "exp", "list", "--name-only"], cwd=workspace, capture_output=True, text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    if EXPERIMENT not in listed.stdout.split():
        run(f"dvc exp run --quiet --name {EXPERIMENT} --set-param lr=0.002", workspace, known=False)


def rewrite(text: str, outputs: dict[str, str]) -> str:
    """The page with every marked block holding its command (the marker is hidden) and its output."""

    def block(match: re.Match[str]) -> str:
        output = outputs[match["command"]]
        return f"{match[1]}```text\n$ {match['command']}\n{output.rstrip()}\n```\n{match[4]}"

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=PROJECT / "demo" / "workspace")
    arguments = parser.parse_args(argv)
    pages = {page: page.read_text() for page in documentation_pages()}
    wanted = {command for text in pages.values() for command in shown_commands(text)}
    unknown = sorted(wanted - COMMANDS.keys())
    if unknown:
        raise SystemExit(f"error: the docs show commands this script does not know: {unknown}")
    if any(COMMANDS[command] == "demo" for command in wanted) and not arguments.workspace.is_dir():
        raise SystemExit(f"error: {arguments.workspace} does not exist; run `make demo` first")
    if any(EXPERIMENT in command for command in wanted):
        make_experiment(arguments.workspace)
    outputs = {command: run(command, arguments.workspace) for command in sorted(wanted)}
    for page, text in pages.items():
        updated = rewrite(text, outputs)
        if updated != text:
            page.write_text(updated)
            print(f"rewrote {page.relative_to(PROJECT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
