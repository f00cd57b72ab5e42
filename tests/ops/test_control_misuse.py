"""The control API of a real `geodns serve` under misuse: racing writes, absurd times,
hostile bodies.  Every answer is JSON, a failed request changes nothing, and the
server keeps serving status, the page and further writes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import ServerProcess, geodns_server

pytestmark = pytest.mark.timeout(90)

CONFIG = """
[server]
zones = "{zones}"
{admin}
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10", "192.0.2.11"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20", "192.0.2.21"]

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30", "192.0.2.31"]

[pools.www]
strategy = "nearest"

[pools.api]
strategy = "failover"
pops = ["iad", "fra"]
"""

# Ten distinct targets, every one matching something in CONFIG.
TARGETS = ["iad", "fra", "sin", "iad/192.0.2.10", "iad/192.0.2.11", "fra/192.0.2.20",
           "fra/192.0.2.21", "sin/192.0.2.30", "sin/192.0.2.31", "*/192.0.2.1?"]


def request(port: int, method: str, path: str, body: bytes | None = None
            ) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request to the control listener."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def put(port: int, payload: object) -> tuple[int, dict]:
    status, ctype, data = request(port, "PUT", "/overrides", json.dumps(payload).encode())
    assert ctype == "application/json", (status, ctype, data[:200])
    return status, json.loads(data)


def overrides(port: int) -> list[dict]:
    status, ctype, data = request(port, "GET", "/status")
    assert (status, ctype) == (200, "application/json"), data[:300]
    return json.loads(data)["overrides"]


def still_healthy(port: int) -> None:
    """/status, the page and a write all work (a failed request left nothing behind)."""
    assert request(port, "GET", "/")[0] == 200
    overrides(port)
    assert put(port, {"target": "sin", "state": "drain"})[0] == 200
    assert request(port, "DELETE", "/overrides/sin")[0] == 200


@pytest.fixture(params=["state file", "no state file"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    state = tmp_path / "admin.state"
    admin = f'[admin]\nstate_file = "{state}"\n' if request.param == "state file" else ""
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(CONFIG.format(zones=REPO_ROOT / "zones", admin=admin))
    with geodns_server(REPO_ROOT / "zones", ["--config", str(cfg)]) as srv:
        srv.state = state if admin else None  # type: ignore[attr-defined]
        yield srv


def test_parallel_puts_are_all_applied_and_persisted(server: ServerProcess) -> None:
    port = server.control_port()
    for state in ("down", "drain"):  # twice: the second round replaces every line
        with ThreadPoolExecutor(len(TARGETS)) as pool:
            results = list(pool.map(lambda t, s=state: put(port, {"target": t, "state": s}),
                                    TARGETS))
        assert [status for status, _ in results] == [200] * len(TARGETS), results
        got = {(o["pattern"], o["state"]) for o in overrides(port)}
        assert got == {(t, state) for t in TARGETS}
        state_file: Path | None = server.state  # type: ignore[attr-defined]
        if state_file is not None:
            lines = sorted(state_file.read_text().splitlines())
            assert lines == sorted(f"{t} {state}" for t in TARGETS)
            assert not list(state_file.parent.glob(".*.tmp"))  # no temporary file left
    assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize("until", ["+9999999w", "+999999999d", "9999-12-31T23:59:59Z",
                                   "+53w", "+1" + "0" * 5000 + "s"])
def test_until_beyond_a_year_is_refused_and_changes_nothing(server: ServerProcess,
                                                            until: str) -> None:
    port = server.control_port()
    state_file: Path | None = server.state  # type: ignore[attr-defined]
    before = state_file.read_text() if state_file and state_file.exists() else None
    status, data = put(port, {"target": "fra", "state": "down", "until": until})
    assert status == 400 and not data["ok"], data
    assert overrides(port) == []
    if state_file is not None:
        assert (state_file.read_text() if state_file.exists() else None) == before
    still_healthy(port)
    assert put(port, {"target": "fra", "state": "down", "until": "+52w"})[0] == 200


@pytest.mark.parametrize("body", [
    b"[" * 50_000,                        # nested too deeply for the JSON parser
    b'{"target": ' * 5_000,
    b"\xff\xfe not utf-8",
    b"",
    b"12",
    b'{"target": "fra", "state": "down", "until": "+30m"} trailing',
    json.dumps({"target": "fra", "state": ["down"]}).encode(),
    json.dumps({"target": "fra", "state": "down", "until": "+" + "9" * 70 + "s"}).encode(),
    json.dumps({"target": "x" * 60_000, "state": "down"}).encode(),
    json.dumps({"target": "f" + "*" * 200, "state": "down"}).encode(),
    b"x" * 70_000,                        # over the body limit
])
def test_every_bad_body_gets_a_json_error(server: ServerProcess, body: bytes) -> None:
    port = server.control_port()
    status, ctype, data = request(port, "PUT", "/overrides", body)
    assert 400 <= status < 500, (status, data[:200])
    assert ctype == "application/json", (status, ctype, data[:200])
    answer = json.loads(data)
    assert answer["ok"] is False and len(answer["error"]) < 1000
    assert overrides(port) == []
    still_healthy(port)


def test_long_targets_are_refused_so_every_override_can_be_deleted(
        server: ServerProcess) -> None:
    port = server.control_port()
    long = "fra" + "*" * 200
    status, data = put(port, {"target": long, "state": "down"})
    assert status == 400 and "at most 128" in data["error"]
    status, ctype, raw = request(port, "DELETE", f"/overrides/{long}")
    assert (status, ctype) == (400, "application/json") and b"at most 128" in raw
    ok = "fra" + "*" * 125  # the longest accepted pattern can be set and deleted
    assert put(port, {"target": ok, "state": "down"})[0] == 200
    assert request(port, "DELETE", f"/overrides/{ok}")[0] == 200
    assert overrides(port) == []
