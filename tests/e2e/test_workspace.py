"""Pipeline workspaces: a committed git + DVC copy of the pipeline, never over existing files."""

import pytest
from ruamel.yaml import YAML

from medcls.demo import workspace


def test_workspace_holds_the_pipeline_and_params_committed(tmp_path):
    params = YAML().load("# kept comment\nseed: 1\n")
    target = workspace.create_workspace(tmp_path / "ws", params, message="first")
    assert (target / "dvc.yaml").is_file() and (target / "stages" / "roi.py").is_file()
    assert not list(target.rglob("__pycache__"))
    assert (target / "params.yaml").read_text() == "# kept comment\nseed: 1\n"
    assert workspace.run_in(target, "git", "log", "--format=%s").split() == ["first"]
    assert workspace.run_in(target, "git", "status", "--porcelain") == ""
    assert (target / ".dvc").is_dir()


def test_a_non_empty_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        workspace.create_workspace(tmp_path, {"seed": 1})


def test_a_failing_command_reports_its_output(tmp_path):
    with pytest.raises(workspace.WorkspaceCommandError, match="exit 3"):
        workspace.run_in(tmp_path, "python", "-c", "import sys; print('boom'); sys.exit(3)")


def test_dvc_commands_write_nothing_to_home_or_the_temp_folder(tmp_path, monkeypatch):
    """DVC's usage analytics are off in a workspace (they would leave a report in the temp folder
    and send it); git and DVC keep everything else inside the workspace."""
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(temp))
    params = {"seed": 1, "datasets": {}, "trained": [], "split": {"fold_ids": []}}  # what dvc.yaml reads
    target = workspace.create_workspace(tmp_path / "ws", params)
    workspace.run_in(target, "dvc", "status")
    assert workspace.run_in(target, "dvc", "config", "core.analytics").strip() == "false"
    assert list(home.iterdir()) == [] and list(temp.iterdir()) == []
