"""The layers of medcls import downwards only, so that each can be read, tested and changed alone.

`medcls.params` (the schema of params.yaml) is the leaf every layer imports: it imports nothing
else of medcls. The phase subpackages are a library that the stages call: they import none of the
stage runtime (the command line entry point, the output writers), so they run without DVC.
Test modules import shared test code from tests/support only, never another test module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[3]
PHASES = ("data", "images", "model", "training", "evaluation")
STAGE_RUNTIME = ("medcls.pipeline.stage", "medcls.pipeline.outputs")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (`from a import b` gives a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def files_of(package: str) -> list[Path]:
    return sorted((PROJECT / "medcls" / package).rglob("*.py"))


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize("path", files_of("params"), ids=lambda path: path.name)
def test_params_is_a_leaf(path):
    outside = {
        name
        for name in imported_modules(path)
        if within(name, ("medcls",)) and not within(name, ("medcls.params",))
    }
    assert not outside, f"{path.relative_to(PROJECT)} imports {sorted(outside)}"


@pytest.mark.parametrize(
    "path",
    [path for phase in PHASES for path in files_of(phase)],
    ids=lambda path: str(path.relative_to(PROJECT / "medcls")),
)
def test_phase_packages_import_no_stage_runtime(path):
    runtime = {name for name in imported_modules(path) if within(name, STAGE_RUNTIME)}
    assert not runtime, f"{path.relative_to(PROJECT)} imports {sorted(runtime)}"


def test_the_rules_see_imports_inside_functions(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from medcls.pipeline import outputs\n")
    assert within("medcls.pipeline.outputs", STAGE_RUNTIME)
    assert "medcls.pipeline.outputs" in imported_modules(module)


def test_test_modules_import_only_the_support_package_of_the_tests():
    """Each test module stands alone: shared code lives in tests/support, fixtures in conftest.py."""
    tests = PROJECT / "tests"
    found = {
        path.relative_to(PROJECT).as_posix(): sorted(
            name for name in imported_modules(path) if within(name, ("tests",)) and not within(name, ("tests.support",))
        )
        for path in sorted(tests.rglob("*.py"))
        if not path.is_relative_to(tests / "support")
    }
    assert {path: names for path, names in found.items() if names} == {}
