"""`medcls compare` lists every changed decision and pairs the sides per subgroup; `medcls review`
shows the top changed cases and the confident errors with the Grad-CAM thumbnails HEAD has."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls import cli
from medcls.demo.workspace import run_in
from medcls.evaluation import cases
from medcls.pipeline.paths import DatasetPaths
from tests.support.scored_sides import scored_rows, write_side

PNG = b"\x89PNG\r\n\x1a\nthumbnail"


def commit(repo: Path, message: str) -> None:
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", message)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A weak model, then a better one with its subgroup values (a large `A` group, a small `B`
    one, images without a site in `unknown`), a model card listing two confident errors and the
    thumbnails of one error and one image whose decision changed."""
    run_in(tmp_path, "git", "init", "-q")
    run_in(tmp_path, "dvc", "init", "-q")
    write_side(tmp_path, "busi", scored_rows(separation=0.1), 0.5)
    commit(tmp_path, "weak model")
    better = scored_rows(separation=0.7)
    write_side(tmp_path, "busi", better, 0.45)
    paths = DatasetPaths("busi")
    site = np.where(np.arange(len(better)) < 180, "A", "B").astype(object)
    site[:10] = ""
    (tmp_path / paths.subgroups).parent.mkdir(parents=True)
    better[["split", "id"]].assign(site=site).to_csv(tmp_path / paths.subgroups, index=False)
    test = better[better["split"] == "test"]
    errors = cases.confident_errors(test, 0.45, 2)
    card = {
        "evaluation": {
            "cases": {"confident_errors": errors[["id", "label", "probability"]].to_dict("records")}
        }
    }
    (tmp_path / "reports").mkdir()
    (tmp_path / paths.card(".json")).write_text(json.dumps(card))
    (tmp_path / paths.cases).mkdir(parents=True)
    (tmp_path / paths.cases / cases.thumbnail_name(errors["id"][0])).write_bytes(PNG)
    commit(tmp_path, "better")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def expected_changes() -> pd.DataFrame:
    old, new = scored_rows(separation=0.1), scored_rows(separation=0.7)
    paired = pd.merge(
        new[new["split"] == "test"], old[old["split"] == "test"], on="id", suffixes=("_new", "_old")
    )
    return cases.changed_decisions(paired, threshold_new=0.45, threshold_old=0.5)


def test_compare_lists_every_changed_decision(repo, capsys):
    assert cli.main(["compare", "HEAD~1", "HEAD", "--resamples", "50"]) == 0
    text = capsys.readouterr().out
    changed = expected_changes()
    assert len(changed) > 0
    assert f"Decisions that changed ({len(changed)} images):" in text
    listed = [line for line in text.splitlines() if line.startswith("| busi | test | `")]
    assert [line.split("`")[1] for line in listed] == changed["id"].tolist()
    first = changed.iloc[0]
    assert f"{first['probability_old']:.4f} → {first['probability_new']:.4f}" in listed[0]
    assert "0.5000 → 0.4500" in listed[0]  # each side's threshold, which explains the change


def test_compare_pairs_each_subgroup_and_names_the_small_ones(repo, capsys):
    assert cli.main(["compare", "HEAD~1", "HEAD", "--resamples", "50"]) == 0
    text = capsys.readouterr().out
    rows = {
        line.split("|")[3].strip(): line
        for line in text.splitlines()
        if line.startswith("| busi | test | site = ")
    }
    assert list(rows) == ["site = A", "site = B", "site = unknown"]
    assert "not compared: fewer than 20 images" in rows["site = B"]  # 10 test images
    assert "not compared" in rows["site = unknown"]  # 5 test images
    assert "evidence of an improvement" in rows["site = A"]


def test_review_shows_changed_cases_and_confident_errors_with_thumbnails(repo):
    out = repo / "review"
    assert cli.main(["review", "HEAD~1", "HEAD", "--out", str(out), "--resamples", "50"]) == 0
    text = (out / "review.md").read_text()
    changed = expected_changes()
    section = text.split("### Decisions that changed")[1].split("###")[0]
    shown = [line.split("`")[1] for line in section.splitlines() if line.startswith("| busi |")]
    assert shown == changed["id"].head(10).tolist()
    errors = text.split("### Most confident errors at `HEAD`")[1].split("###")[0]
    thumbnail = next(line for line in errors.splitlines() if "![Grad-CAM]" in line)
    relative = thumbnail.split("](")[1].split(")")[0]
    assert (out / relative).read_bytes() == PNG
    assert errors.count("| busi |") == 2
