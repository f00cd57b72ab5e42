"""Operator-level CLI smoke: the shipped zones check clean, broken zones stop `serve`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.net import free_port
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.servers import geodns_cmd

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
    config = ("--config", str(REPO_ROOT / "geodns.toml")) if zones == REPO_ROOT / "zones" \
        else ("--no-config",)
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
        geodns_cmd("check", "--no-config", "--zones", str(tmp_path)), capture_output=True,
        text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    problems = [x for x in (r.stdout + r.stderr).splitlines() if re.match(r"^\S+:\d+: \S", x)]
    assert any(re.match(r"^\S*broken\.test\.zone:6: ", x) for x in problems), r.stdout + r.stderr


def test_serve_refuses_to_start_on_broken_zones(tmp_path: Path) -> None:
    (tmp_path / "broken.test.zone").write_text(BROKEN)
    port = free_port()
    try:
        r = subprocess.run(
            geodns_cmd("serve", "--no-config", "--zones", str(tmp_path), "--listen",
                       f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the process is killed by run()
        raise AssertionError("geodns serve kept running with a broken zone") from exc
    assert r.returncode != 0
    assert re.search(r"broken\.test\.zone:6: ", r.stderr), r.stderr


def discovered_checkout(tmp_path: Path) -> Path:
    """A directory laid out like a checkout: ./geodns.toml and ./zones (the shipped ones)."""
    (tmp_path / "zones").mkdir()
    for f in (REPO_ROOT / "zones").iterdir():
        (tmp_path / "zones" / f.name).write_text(f.read_text())
    (tmp_path / "geodns.toml").write_text((REPO_ROOT / "geodns.toml").read_text())
    return tmp_path


def test_check_in_a_checkout_finds_geodns_toml_and_passes() -> None:
    r = subprocess.run(geodns_cmd("check"), cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config: geodns.toml (found in the current directory)" in r.stderr
    assert "example.com. serial" in r.stderr


def test_check_without_any_config_says_so(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "plain.test.zone").write_text(
        "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n")
    r = subprocess.run(geodns_cmd("check"), cwd=tmp_path, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config: none (no --config and no ./geodns.toml)" in r.stderr


def test_serve_explain_and_simulate_find_the_same_config(tmp_path: Path) -> None:
    import dns.edns

    from tests.helpers.queries import ask, make_query
    from tests.helpers.servers import run_server

    here = discovered_checkout(tmp_path)
    (here / "clients.csv").write_text("81.2.69.0/24,100\n")
    explain = subprocess.run(geodns_cmd("explain", "www.example.com", "--client",
                                        "81.2.69.160"), cwd=here, capture_output=True,
                             text=True, timeout=60)
    assert explain.returncode == 0, explain.stderr
    assert "config: geodns.toml (found in the current directory)" in explain.stderr
    assert "fra" in explain.stdout and "[CHOSEN]" in explain.stdout
    sim = subprocess.run(geodns_cmd("simulate", "--clients", "clients.csv", "--pool", "www"),
                         cwd=here, capture_output=True, text=True, timeout=60)
    assert sim.returncode == 0, sim.stderr
    assert "config: geodns.toml (found in the current directory)" in sim.stderr

    def argv(port: int) -> list[str]:
        return geodns_cmd("serve", "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0")

    with run_server(argv, "example.com.", name="geodns", cwd=here) as srv:
        ecs = dns.edns.ECSOption("81.2.69.0", 24)
        reply = ask(srv.port, make_query("www.example.com", "A", options=[ecs]))
        assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["192.0.2.20"]
        assert "config: geodns.toml (found in the current directory)" in srv.stderr_text()
