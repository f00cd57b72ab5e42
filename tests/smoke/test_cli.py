"""Operator-level CLI smoke: the shipped zones check clean, broken zones stop `serve`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.util import DATA_DIR, REPO_ROOT, free_port, geodns_cmd

pytestmark = pytest.mark.timeout(60)

BROKEN = """$ORIGIN broken.test.
$TTL 300
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
      IN NS  ns1
ns1   IN A   192.0.2.1
oops  IN A   not-an-address
"""


@pytest.mark.parametrize(
    "zones", [REPO_ROOT / "zones", DATA_DIR / "interop"], ids=["shipped", "interop"]
)
def test_check_accepts_zones(zones: Path) -> None:
    config = ("--config", str(REPO_ROOT / "geodns.toml")) if zones == REPO_ROOT / "zones" else ()
    r = subprocess.run(
        geodns_cmd("check", "--zones", str(zones), *config),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.test.zone").write_text(BROKEN)
    r = subprocess.run(
        geodns_cmd("check", "--zones", str(tmp_path)), capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 1, r.stdout + r.stderr
    problems = [x for x in (r.stdout + r.stderr).splitlines() if re.match(r"^\S+:\d+: \S", x)]
    assert any(re.match(r"^\S*broken\.test\.zone:6: ", x) for x in problems), r.stdout + r.stderr


def test_serve_refuses_to_start_on_broken_zones(tmp_path: Path) -> None:
    (tmp_path / "broken.test.zone").write_text(BROKEN)
    port = free_port()
    try:
        r = subprocess.run(
            geodns_cmd("serve", "--zones", str(tmp_path), "--listen", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the process is killed by run()
        raise AssertionError("geodns serve kept running with a broken zone") from exc
    assert r.returncode != 0
    assert re.search(r"broken\.test\.zone:6: ", r.stderr), r.stderr
