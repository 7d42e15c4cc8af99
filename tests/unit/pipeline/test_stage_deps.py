"""dvc.yaml's code deps cannot drift from the code: every project file a stage imports, directly or
through other project modules (imports inside functions included), lies under one of its deps.

Otherwise a change to that file would leave `dvc repro` reporting "up to date" for outputs that
other code made.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medcls.evaluation import card
from medcls.pipeline.paths import DatasetPaths

PROJECT = Path(__file__).resolve().parents[3]
PACKAGES = ("medcls", "stages")
STAGES = YAML(typ="safe", pure=True).load((PROJECT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file of a project module or package, or None for a name that is not one (a function)."""
    path = PROJECT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_names(path: Path) -> set[str]:
    """Every project module name `path` may import: `import a.b`, `from a.b import c` (c may be a
    module), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def project_files_imported_by(module: str) -> set[Path]:
    """The transitive closure: the module, the packages above each module, and what they import."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        pending.extend(".".join(parts[:end]) for end in range(1, len(parts)))
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        pending.extend(imported_names(path))
    return {path.relative_to(PROJECT) for path in seen}


def is_docstring_only(path: Path) -> bool:
    body = ast.parse((PROJECT / path).read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def definition(stage: dict) -> dict:
    """A stage's definition: the `do` of a `foreach` stage, or the stage itself (also `matrix`)."""
    return stage.get("do", stage)


def stage_module(stage: dict) -> str:
    command = definition(stage)["cmd"]
    match = re.fullmatch(r"python -m (stages\.\w+)( \$\{[\w.]+\})*", command)
    assert match, f"unexpected stage command {command!r}"
    return match.group(1)


def code_deps(stage: dict) -> list[Path]:
    deps = definition(stage)["deps"]
    return [Path(dep) for dep in deps if not dep.startswith(("data/", "models/", "reports/"))]


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_every_imported_project_file_is_under_a_dep(stage_name):
    stage = STAGES[stage_name]
    deps = code_deps(stage)
    imported = project_files_imported_by(stage_module(stage))
    uncovered = sorted(
        str(path)
        for path in imported
        if not any(path == dep or dep in path.parents for dep in deps)
        and not is_docstring_only(path)  # an empty package marker cannot change an output
    )
    assert not uncovered, f"{stage_name} imports these files, which dvc.yaml does not list: {uncovered}"


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_every_code_dep_exists_and_is_imported(stage_name):
    """No stale dep (a renamed file) and no dep on code the stage never runs (needless reruns)."""
    stage = STAGES[stage_name]
    imported = project_files_imported_by(stage_module(stage))
    for dep in code_deps(stage):
        assert (PROJECT / dep).exists(), f"{stage_name}: dep {dep} does not exist"
        assert any(path == dep or dep in path.parents for path in imported), (
            f"{stage_name}: dep {dep} is never imported by {stage_module(stage)}"
        )


def test_the_closure_follows_imports_inside_functions():
    """stages/roi.py imports TFRecord writing inside its function (workers stay TensorFlow-free)."""
    assert Path("medcls/images/tfrecords.py") in project_files_imported_by("stages.roi")
    assert Path("medcls/data/sources.py") in project_files_imported_by("stages.download")
    assert Path("medcls/model/classifier.py") not in project_files_imported_by("stages.download")


def test_evaluate_depends_on_every_file_its_model_card_quotes():
    """The card quotes upstream files; a change to one must rerun evaluate, or the card goes stale."""
    deps = definition(STAGES["evaluate"])["deps"]
    quoted = card.input_files(DatasetPaths("${item}"))
    assert not [path.as_posix() for path in quoted.values() if path.as_posix() not in deps]
