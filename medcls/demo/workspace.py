"""Pipeline workspaces: a fresh git + DVC repository holding this project's pipeline and given params.

The end-to-end test and the offline demo run `dvc repro` in such a copy, so they never touch the
project's own data, models or metrics, and exercise the real dvc.yaml, stages and library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML

# The clone this package runs from (installed editable, as `make` does): a workspace copies its
# pipeline files, which an installed wheel does not hold.
PROJECT = Path(__file__).resolve().parents[2]
PIPELINE_FILES = ("dvc.yaml", ".dvcignore", "plot_templates", "medcls", "stages")


class WorkspaceCommandError(RuntimeError):
    """A command in a workspace failed; the message holds its output."""


def command_environment() -> dict[str, str]:
    """This interpreter's environment with its `bin` first on PATH (so `dvc` and `python` are the
    ones of this virtual environment), a git identity, so commits work on any machine, and DVC's
    usage analytics off (they would write a report to the system temp folder and send it)."""
    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        TF_CPP_MIN_LOG_LEVEL="2",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="medcls",
        GIT_AUTHOR_EMAIL="medcls@localhost",
        GIT_COMMITTER_NAME="medcls",
        GIT_COMMITTER_EMAIL="medcls@localhost",
    )


def run_in(workspace: Path, *args: str) -> str:
    """Run a command in `workspace`; return its output, or raise with the output if it fails."""
    result = subprocess.run(
        args, cwd=workspace, env=command_environment(), capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise WorkspaceCommandError(
            f"`{' '.join(args)}` failed in {workspace} (exit {result.returncode}):\n{output}"
        )
    return output


def write_pipeline(workspace: Path, params: Mapping) -> None:
    """Copy (or refresh) the pipeline code in `workspace` and write `params` as its params.yaml;
    comments of a ruamel round-trip mapping are kept."""
    if not (PROJECT / "dvc.yaml").is_file():
        raise FileNotFoundError(
            f"a workspace copies the pipeline from a clone of the project, and {PROJECT} is not "
            "one (no dvc.yaml): install medcls from a clone with `pip install -e .`"
        )
    workspace.mkdir(parents=True, exist_ok=True)
    for item in PIPELINE_FILES:
        source = PROJECT / item
        if source.is_dir():
            shutil.copytree(
                source,
                workspace / item,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy(source, workspace / item)
    with (workspace / "params.yaml").open("w") as stream:
        YAML().dump(params, stream)


def create_workspace(target: Path, params: Mapping, message: str = "pipeline") -> Path:
    """A new git + DVC repository in the new or empty directory `target`, holding the pipeline
    and `params`, committed: DVCLive and `dvc metrics diff` compare against a commit."""
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty; remove it or choose another directory")
    write_pipeline(target, params)
    run_in(target, "git", "init", "-q", "--initial-branch", "main")
    run_in(target, "dvc", "init", "-q")
    run_in(target, "dvc", "config", "core.analytics", "false")  # as the project's own .dvc/config
    run_in(target, "git", "add", "-A")
    run_in(target, "git", "commit", "-qm", message)
    return target
