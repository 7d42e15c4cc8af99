"""requirements.txt, the environment `make` and CI install with `pip install --require-hashes`:
every package pinned with its hashes, within pyproject.toml's ranges."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from medcls.demo.workspace import PROJECT

# One requirement of uv's output: `name==version` and its `--hash=sha256:...` continuation lines.
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M)


def locked() -> dict[str, tuple[Version, int]]:
    """{package: (version, number of hashes)} from requirements.txt."""
    text = (PROJECT / "requirements.txt").read_text()
    requirements = [line for line in text.splitlines() if re.match(r"[A-Za-z0-9]", line)]
    pins = {
        canonicalize_name(name): (Version(version), hashes.count("--hash="))
        for name, version, hashes in PINNED.findall(text)
    }
    assert len(pins) == len(requirements), "a requirement without == and hashes"
    return pins


def test_every_package_is_pinned_with_its_hashes():
    pins = locked()
    assert len(pins) > 100  # TensorFlow and DVC bring many
    assert all(hashes for _, hashes in pins.values())


def test_the_lock_satisfies_the_ranges_of_pyproject_dev_extras_included():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), (requirement, version)
