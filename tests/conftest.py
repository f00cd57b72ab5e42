"""Shared fixtures for the geodns test suite (helpers live in tests/util.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from geodns.geo import GeoDB
from tests.util import DATA_DIR, REPO_ROOT, ServerProcess, geodns_server

# `geodns serve` defaults to one worker per CPU; servers started by tests are single
# processes unless a test asks for workers (tests/workers/).
os.environ.setdefault("GEODNS_WORKERS", "1")

# Figures that tests report (e.g. geodns vs gdnsd scopes): printed in a section of
# their own at the end of every run that includes those tests, pass or fail.
_REPORT: list[str] = []


@pytest.fixture(scope="session")
def report_line() -> Callable[[str], None]:
    """``report_line(text)``: show ``text`` in the "reported figures" section."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("reported figures")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def geodns_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start geodns servers inside a test; every one is stopped at teardown.

    Usage: ``srv = geodns_factory(zones_dir, extra_args=("--tcp-idle-timeout", "1"))``.
    """
    with contextlib.ExitStack() as stack:

        def start(zones_dir: Path | str, extra_args: Sequence[str] = (), **kw) -> ServerProcess:
            return stack.enter_context(geodns_server(zones_dir, extra_args, **kw))

        yield start


@pytest.fixture(scope="session")
def interop_zone_dir() -> Path:
    """tests/data/interop: the single test zone interop.example. (big RRsets, wildcards, ...)."""
    return DATA_DIR / "interop"


@pytest.fixture(scope="session")
def shipped_zones_dir() -> Path:
    """The zones/ directory shipped in the repository (example.com)."""
    return REPO_ROOT / "zones"


@pytest.fixture(scope="session")
def real_db() -> Iterator[GeoDB]:
    """The packaged GeoLite2-City database (tables cached in the user's cache dir)."""
    db = GeoDB.open()
    yield db
    db.close()
