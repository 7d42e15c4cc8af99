"""`pip install .` installs the library with its package data and the `medcls` command.

Built from a copy of the project (so no build/ or egg-info lands in it) with this environment's
setuptools and without dependencies, so nothing is downloaded and TensorFlow is not reinstalled.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
# Where the evaluation document's model was imported from, and the title of its generated schema.
SCHEMA_OF_INSTALLED = (
    "from medcls.evaluation import document; "
    "print(document.__file__, document.Evaluation.model_json_schema()['title'])"
)


def packages(root: Path) -> set[str]:
    return {path.parent.relative_to(root).as_posix() for path in root.rglob("__init__.py")}


def test_the_package_installs_with_its_document_schema_and_command(tmp_path):
    source, target = tmp_path / "source", tmp_path / "installed"
    source.mkdir()
    shutil.copy(PROJECT / "pyproject.toml", source)
    shutil.copytree(
        PROJECT / "medcls", source / "medcls", ignore=shutil.ignore_patterns("__pycache__")
    )
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--target", str(target), str(source)]
    subprocess.run(install, check=True, capture_output=True, text=True)

    assert packages(target / "medcls") == packages(PROJECT / "medcls")
    assert not (target / "stages").exists()  # stages run from the project root
    environment = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    schema = subprocess.run(
        [sys.executable, "-c", SCHEMA_OF_INSTALLED],
        cwd=tmp_path,  # not the project root, whose medcls/ would shadow the installed one
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    module_path, schema_title = schema.stdout.split()
    assert Path(module_path).is_relative_to(target) and schema_title == "Evaluation"

    help_text = subprocess.run(
        [target / "bin" / "medcls", "predict", "--help"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--dataset" in help_text.stdout

    version_text = subprocess.run(
        [target / "bin" / "medcls", "--version"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert version_text.stdout.strip() == f"medcls {project['version']}"
