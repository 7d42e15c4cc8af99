"""`medcls compare` and `medcls review` in throw-away DVC projects: sides named as DVC names them
(commits, and experiments by name), paired tables, the review comment, and every unreadable side as
one `error:` line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls import cli
from medcls.demo.workspace import PROJECT, WorkspaceCommandError, run_in
from medcls.evaluation import review
from tests.support.scored_sides import scored_rows, write_side


def commit(repo: Path, message: str) -> None:
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", message)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A DVC project's commits: none with predictions, a weak model, a second dataset, then a
    clearly better model on the same images plus an image the weak one did not have; the
    workspace has lost the second dataset's predictions."""
    run_in(tmp_path, "git", "init", "-q")
    run_in(tmp_path, "dvc", "init", "-q")
    commit(tmp_path, "no predictions")
    weak = scored_rows(separation=0.1)
    write_side(tmp_path, "busi", weak, 0.5)
    commit(tmp_path, "weak model")
    write_side(tmp_path, "old_set", weak, 0.5)
    commit(tmp_path, "a second dataset")
    extra = pd.DataFrame({"split": ["test"], "id": ["new.png"], "label": [1], "probability": [0.9]})
    write_side(tmp_path, "busi", pd.concat([scored_rows(separation=0.7), extra]), 0.45)
    commit(tmp_path, "better")
    (tmp_path / "data/predictions/old_set.csv").unlink()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The paired table's rows by (dataset, split)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    start = next(number for number, line in enumerate(lines) if line.startswith("| dataset | split"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 1 :]]
    return {(cells[0], cells[1]): cells for cells in rows if len(cells) == len(review.HEADER)}


def test_compare_against_a_revision_pairs_the_shared_images(repo, capsys):
    assert cli.main(["compare", "HEAD~1", "--resamples", "300"]) == 0
    text = capsys.readouterr().out
    row = table_rows(text)["busi", "test"]
    assert row[2] == "100"  # the image new at HEAD is left out, and said so
    assert "busi test: 100 images paired; left out 1 predicted on one side only" in text
    assert row[-1] == "evidence of an improvement; the decisions differ (McNemar)"
    assert row[4].startswith("+")
    assert "old_set: not compared: no data/predictions/old_set.csv in the workspace" in text


def test_compare_two_revisions_leaves_the_workspace_out(repo, capsys):
    assert cli.main(["compare", "HEAD~1", "HEAD", "--resamples", "100"]) == 0
    text = capsys.readouterr().out
    assert table_rows(text)["old_set", "test"][-1] == "identical predictions"
    assert "as `HEAD~1` → `HEAD`" in text and "not compared" not in text


def test_compare_with_itself_finds_no_change(repo, capsys):
    assert cli.main(["compare", "HEAD", "--resamples", "100"]) == 0
    row = table_rows(capsys.readouterr().out)["busi", "test"]
    assert row[4] == "+0.000 [+0.000, +0.000]" and row[-1] == "identical predictions"


def test_unrelated_changes_are_no_evidence_of_a_change(repo, capsys):
    before = pd.read_csv(repo / "data/predictions/busi.csv")
    noise = np.random.default_rng(0).normal(0, 0.01, len(before))
    before.assign(probability=np.clip(before["probability"] + noise, 0, 1)).to_csv(
        repo / "data/predictions/busi.csv", index=False
    )
    assert cli.main(["compare", "HEAD", "--resamples", "300"]) == 0
    assert table_rows(capsys.readouterr().out)["busi", "test"][-1] == "no evidence of a change"


def test_a_side_without_a_threshold_is_named_not_compared(repo, capsys):
    (repo / "metrics/busi.json").write_text('{"test": {"auc": 0.9}}')
    assert cli.main(["compare", "HEAD", "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert "busi test: not compared: no test.threshold in metrics/busi.json in the workspace" in out
    assert "No predictions to compare." in out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "revisions, message",
    [
        (["no-such-branch"], "error: unknown revision 'no-such-branch': not a branch, tag, commit or experiment name"),
        (["HEAD", "no-such-branch"], "error: unknown revision 'no-such-branch'"),
        (["HEAD~3"], "error: no data/predictions/*.csv at 'HEAD~3': nothing to compare"),
    ],
)
@pytest.mark.parametrize("command", ["compare", "review"])
def test_a_revision_dvc_cannot_name_or_without_predictions_is_a_one_line_error(
    repo, capsys, command, revisions, message
):
    options = ["--out", str(repo / "review")] if command == "review" else []
    assert cli.main([command, *revisions, *options]) == 2
    assert one_error_line(capsys).startswith(message)


def duplicate_first_row(text: str) -> str:
    return text + text.splitlines()[1] + "\n"


def merge_conflict(text: str) -> str:
    return f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> sharper\n"


def truncated(text: str) -> str:
    return text[: len(text) // 2]


@pytest.mark.parametrize(
    "path, corrupt, message",
    [
        (
            "data/predictions/busi.csv",
            duplicate_first_row,
            ": image 'case/0.png' is predicted 2 times in split 'val'",
        ),
        ("data/predictions/busi.csv", merge_conflict, ": line 1 is a git merge-conflict marker"),
        ("metrics/busi.json", truncated, " is not valid JSON"),
    ],
)
@pytest.mark.parametrize("committed", [False, True])
def test_a_corrupt_or_conflicting_file_is_a_one_line_error_naming_it(
    repo, capsys, path, corrupt, message, committed
):
    (repo / path).write_text(corrupt((repo / path).read_text()))
    if committed:
        commit(repo, "corrupted")
    revisions, where = (["HEAD~1", "HEAD"], "at 'HEAD'") if committed else (["HEAD"], "in the workspace")
    assert cli.main(["compare", *revisions, "--resamples", "20"]) == 2
    assert one_error_line(capsys).startswith(f"error: {path} {where}{message}")


def test_the_compare_command_runs_without_tensorflow(repo):
    """The pull-request workflow needs no TensorFlow: `python -m medcls compare` must not import it."""
    code = (
        "import sys; sys.argv = ['medcls', 'compare', 'HEAD~2', '--resamples', '20'];"
        "import runpy;\n"
        "try: runpy.run_module('medcls', run_name='__main__')\n"
        "except SystemExit as status: assert status.code == 0, status\n"
        "heavy = sorted({'tensorflow', 'keras', 'cv2', 'matplotlib'} & set(sys.modules))\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "| busi | test |" in result.stdout


def test_paired_rows_leave_out_relabelled_images():
    headline = {"test": {"threshold": 0.5}}
    new = review.Side(
        pd.DataFrame(
            {"id": ["a", "b", "c"], "split": "test", "label": [0, 1, 1], "probability": 0.5}
        ),
        headline,
    )
    old = review.Side(new.predictions.assign(label=[0, 1, 0]), headline)
    both, one_sided, relabelled = review.paired_rows(new, old, "test")
    assert list(both["id"]) == ["a", "b"] and (one_sided, relabelled) == (0, 1)


def test_the_review_holds_metrics_with_intervals_the_paired_table_and_roc_curves(repo, capsys):
    out = repo / "review"
    assert cli.main(["review", "HEAD~2", "--out", str(out), "--resamples", "100"]) == 0
    text = (out / "review.md").read_text()
    assert text.startswith("## the workspace vs `HEAD~2`")
    assert "### Params\n\nNo param changed." in text
    metric = next(line for line in text.splitlines() if line.startswith("| busi | test.auc |"))
    before, after, change, interval = [cell.strip() for cell in metric.strip("|").split("|")][2:]
    assert float(after) > float(before) and change.startswith("+")
    low, high = (float(bound) for bound in interval.strip("[]").split(", "))
    assert low < float(after) < high
    assert table_rows(text)["busi", "test"][-1].startswith("evidence of an improvement")
    assert "![ROC curves on test, `HEAD~2` and the workspace](roc.png)" in text
    assert (out / "roc.png").read_bytes().startswith(b"\x89PNG")


def test_the_review_lists_changed_headline_values_nested_or_null(repo):
    """External sets nest a level deeper; a value that cannot be computed is null, and so is an
    interval with `evaluate.bootstrap: 0`."""
    path = repo / "metrics/busi.json"
    document = json.loads(path.read_text())
    document["external"] = {"uclm": {"auc": 0.8, "auc_low": None, "auc_high": None, "ece": None}}
    path.write_text(json.dumps(document))
    rows, unchanged = review.headline_changes(review.Revision("HEAD"), review.Revision(None), ["busi"])
    assert rows == [("busi", "external.uclm.auc", "—", "0.800", "—", "—")]
    assert unchanged == 4  # test.n, test.auc, test.threshold, and ece: null here, absent at HEAD


# --- an experiment, named as `dvc exp run -n` names it ---------------------------------------

# The tiny project's one stage: tests.support.scored_sides writes busi's predictions and headline metrics.
EXPERIMENT_PIPELINE = f"""\
stages:
  evaluate:
    cmd: PYTHONPATH={PROJECT} python -m tests.support.scored_sides
    params: [separation, threshold]
    outs:
      - data/predictions/busi.csv:
          cache: false
    metrics:
      - metrics/busi.json:
          cache: false
"""


@pytest.mark.e2e
def test_an_experiment_is_compared_and_reviewed_by_its_name(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("separation: 0.1\nthreshold: 0.5\n")
    (project / "dvc.yaml").write_text(EXPERIMENT_PIPELINE)
    run_in(project, "git", "init", "-q")
    run_in(project, "dvc", "init", "-q")
    run_in(project, "dvc", "repro", "-q")
    commit(project, "weak model")
    run_in(project, "dvc", "exp", "run", "-q", "-n", "sharper", "-S", "separation=0.7")
    run_in(project, "git", "checkout", "--", ".")  # the workspace back at the weak model
    monkeypatch.chdir(project)
    with pytest.raises(WorkspaceCommandError):  # git alone does not know the name
        run_in(project, "git", "rev-parse", "--verify", "-q", "sharper")
    refs = run_in(project, "git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps")
    experiment = next(line.split()[1] for line in refs.splitlines() if line.split()[0].endswith("/sharper"))

    assert cli.main(["compare", "sharper", "--resamples", "200"]) == 0
    against_workspace = table_rows(capsys.readouterr().out)["busi", "test"]
    assert against_workspace[-1].startswith("evidence of a decline")
    assert cli.main(["compare", "HEAD", "sharper", "--resamples", "200"]) == 0
    by_name = capsys.readouterr().out
    assert table_rows(by_name)["busi", "test"][-1].startswith("evidence of an improvement")
    assert cli.main(["compare", "HEAD", experiment, "--resamples", "200"]) == 0
    assert capsys.readouterr().out == by_name.replace("`sharper`", f"`{experiment}`")

    out = tmp_path / "review"
    assert cli.main(["review", "HEAD", "sharper", "--out", str(out), "--resamples", "200"]) == 0
    text = (out / "review.md").read_text()
    assert "| params.yaml | separation | 0.1 | 0.7 |" in text
    assert any(line.startswith("| busi | test.auc |") for line in text.splitlines())
    assert table_rows(text)["busi", "test"] == table_rows(by_name)["busi", "test"]
    assert "(roc.png)" in text and (out / "roc.png").read_bytes().startswith(b"\x89PNG")
