"""ruff and mypy are part of the suite, so CI keeps the code clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.util import REPO_ROOT


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make test installs it)")
    return path


def test_ruff_clean() -> None:
    paths = ["geodns", "tests", "tools", "tools/bench", "tools/demo", "tools/microbench",
             "tools/steeringbench", "tools/tcpabuse", "tools/amplification", "tools/workersbench"]
    r = subprocess.run([_tool("ruff"), "check", *paths], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
