"""Reproducible installs: constraints.txt pins every dependency we declare, the suite
runs with exactly those versions, and every install in the Makefile uses it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from tests.helpers.paths import REPO_ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            out[_norm(name)] = version
    return out


def declared() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    names = {_norm(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in reqs}
    return names - {"geodns"}  # the test extra pulls in geodns[plot]


def test_every_declared_dependency_is_pinned_and_installed_at_that_version() -> None:
    pinned = pins()
    missing = declared() - set(pinned)
    assert not missing, f"not pinned in constraints.txt: {sorted(missing)}"
    for name in declared():
        assert metadata.version(name) == pinned[name], (
            f"{name} {metadata.version(name)} is installed but constraints.txt pins "
            f"{pinned[name]}: run `make deps-test` (or regenerate the pins after a "
            "passing run)")


def test_matplotlib_is_only_in_the_plot_extra() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert not any(r.startswith("matplotlib") for r in project["dependencies"])
    assert any(r.startswith("matplotlib") for r in project["optional-dependencies"]["plot"])


def test_makefile_installs_with_the_constraints() -> None:
    text = (REPO_ROOT / "Makefile").read_text()
    installs = [line for line in text.splitlines() if "pip install" in line
                and "--upgrade pip" not in line]
    assert installs
    for line in installs:
        assert "-c constraints.txt" in line or "$(PIP_INSTALL)" in line, line
    assert "PIP_INSTALL := $(BIN)/pip install -q -c constraints.txt" in text
