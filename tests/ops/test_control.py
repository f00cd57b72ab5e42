"""Control API over real HTTP on 127.0.0.1 (random port) against a fake backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from geodns.ops.control import (
    bound_port,
    make_app,
    start_control,
    stop_control,
)
from geodns.ops.metrics import CONTENT_TYPE
from geodns.ops.status import HealthChange, TrafficMix
from geodns.traffic.mix import MixEntry
from tests.ops.fakes import AsyncOverridesBackend, FakeBackend

Client = Callable[..., Awaitable[tuple[int, Any]]]


def run(backend: FakeBackend, body: Callable[[Client, int], Awaitable[None]], *,
        token: str | None = None, require_token: bool = False) -> None:
    """Serve ``backend`` on 127.0.0.1:<free port>, run ``body``, always stop."""

    async def go() -> None:
        if require_token:
            # Same app a non-loopback listener gets, but bound to loopback (test rule).
            runner = web.AppRunner(make_app(backend, token=token, require_token=True))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        else:
            runner = await start_control(backend, "127.0.0.1", 0, token)
        port = bound_port(runner)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:

                async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
                    async with s.request(method, f"http://127.0.0.1:{port}{path}",
                                         **kw) as r:
                        if r.content_type == "application/json":
                            return r.status, await r.json()
                        return r.status, (r.headers.get("Content-Type"), await r.read())

                await body(call, port)
        finally:
            await stop_control(runner)

    asyncio.run(go())


def test_metrics_endpoint() -> None:
    backend = FakeBackend()
    backend.metrics.query("udp", 1, 0)

    async def body(call: Client, port: int) -> None:
        status, (ctype, data) = await call("GET", "/metrics")
        assert status == 200
        assert ctype == CONTENT_TYPE
        assert b'geodns_queries_total{qtype="A",rcode="NOERROR",transport="udp"} 1.0' in data

    run(backend, body)


def test_status_has_everything() -> None:
    backend = FakeBackend()
    for _ in range(7):
        backend.metrics.answer("www", "iad")
    for _ in range(3):
        backend.metrics.answer("www", "fra")
    backend.changes = [HealthChange(time.time(), "sin", "up", "down", False,
                                    "check web: connect refused")]

    async def body(call: Client, port: int) -> None:
        status, data = await call("GET", "/status")
        assert status == 200
        assert data["zones"][0]["name"] == "example.com."
        assert data["pools"][0]["name"] == "www"
        states = {p["name"]: (p["real"], p["forced"], p["state"]) for p in data["pops"]}
        assert states == {"iad": ("up", None, "up"), "fra": ("up", "drain", "drain"),
                          "sin": ("down", None, "down")}
        assert data["last_reload"]["ok"] is True
        answers = data["answers"]
        assert answers["total"] == 10
        assert answers["pops"]["iad"]["share"] == pytest.approx(0.7)
        assert answers["pops"]["fra"]["count"] == 3
        assert answers["pops"]["sin"]["share"] == 0
        assert data["recent_changes"][0]["target"] == "sin"

    run(backend, body)


def test_reload(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()

    async def body(call: Client, port: int) -> None:
        status, data = await call("POST", "/reload")
        assert (status, data) == (200, {"ok": True, "problems": []})
        backend.reload_result = (False, ["zones/example.com.zone:7: bad TTL"])
        status, data = await call("POST", "/reload")
        assert status == 422
        assert data["ok"] is False and data["problems"] == ["zones/example.com.zone:7: bad TTL"]
        status, _ = await call("GET", "/reload")
        assert status == 405

    with caplog.at_level(logging.INFO, logger="geodns.control"):
        run(backend, body)
    assert backend.reloads == 2
    writes = [r.getMessage() for r in caplog.records if "reload" in r.getMessage()]
    assert any("127.0.0.1" in w for w in writes), writes


@pytest.mark.parametrize("backend_cls", [FakeBackend, AsyncOverridesBackend])
def test_overrides_set_and_clear(backend_cls: type[FakeBackend],
                                 caplog: pytest.LogCaptureFixture) -> None:
    backend = backend_cls()

    async def body(call: Client, port: int) -> None:
        t0 = time.time()
        status, data = await call("PUT", "/overrides",
                                  json={"target": "fra", "state": "down", "until": "+30m"})
        assert status == 200, data
        assert data["target"] == "fra" and data["state"] == "down"
        assert data["matches"] == ["fra"]
        state, until = backend.overrides["fra"]
        assert state == "down" and until is not None
        assert t0 + 1800 - 5 <= until <= time.time() + 1800 + 5

        status, data = await call("PUT", "/overrides", json={"target": "fra/*",
                                                             "state": "DRAIN"})
        assert status == 200 and data["matches"] == ["fra/192.0.2.20", "fra/192.0.2.21"]
        assert backend.overrides["fra/*"] == ("drain", None)

        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 200 * 86400))
        status, data = await call("PUT", "/overrides", json={
            "target": "iad/2001:DB8:10:0::1", "state": "up", "until": later})
        assert status == 200 and data["target"] == "iad/2001:db8:10::1"
        assert data["until"] == later

        status, data = await call("DELETE", "/overrides/fra/*")
        assert status == 200 and data["target"] == "fra/*"
        assert "fra/*" not in backend.overrides
        status, data = await call("DELETE", "/overrides/fra")
        assert status == 200
        status, data = await call("DELETE", "/overrides/fra")
        assert status == 404 and "no override" in data["error"]
        status, data = await call("DELETE", "/overrides/iad/2001:db8:10::1")
        assert status == 200

    with caplog.at_level(logging.INFO, logger="geodns.control"):
        run(backend, body)
    assert backend.overrides == {}
    logged = [r.getMessage() for r in caplog.records]
    assert any("override fra down" in m and "127.0.0.1" in m for m in logged), logged
    assert any("override fra cleared by 127.0.0.1" in m for m in logged), logged


BAD_BODIES: list[tuple[Any, str]] = [
    ("not json", "not valid JSON"),
    (["fra", "down"], "expected a JSON object"),
    ({"state": "down"}, '"target" is required'),
    ({"target": "fra", "state": "sideways"}, '"state" must be one of'),
    ({"target": "fra"}, '"state" must be one of'),
    ({"target": "fra", "state": "down", "until": "tomorrow"}, "bad time"),
    ({"target": "fra", "state": "down", "until": "2020-01-01T00:00:00Z"}, "in the past"),
    ({"target": "fra", "state": "down", "until": "2030-01-01T00:00:00"}, "no timezone"),
    ({"target": "fra", "state": "down", "until": 1800}, '"until" must be a string'),
    ({"target": "fra", "state": "down", "for": "+30m"}, "unknown key"),
    ({"target": "fra/not-an-ip", "state": "down"}, "is not an IP address"),
    ({"target": "fra/1/2", "state": "down"}, "at most one '/'"),
    ({"target": "frq", "state": "down"}, "matches no POP"),
    ({"target": "fra/192.0.2.99", "state": "down"}, "matches no POP"),
    ({"target": "fra", "state": "down", "force": "yes"}, '"force" must be true or false'),
]


@pytest.mark.parametrize(("payload", "message"), BAD_BODIES)
def test_bad_override_input_is_400_and_changes_nothing(payload: Any, message: str) -> None:
    backend = FakeBackend()

    async def body(call: Client, port: int) -> None:
        kw = {"data": payload} if isinstance(payload, str) else {"json": payload}
        status, data = await call("PUT", "/overrides", **kw)
        assert status == 400, data
        assert data["ok"] is False and message in data["error"], data["error"]

    run(backend, body)
    assert backend.overrides == {}


def test_backend_value_error_is_400() -> None:
    backend = FakeBackend()
    backend.fail_set = "geodns-state.txt has errors; fix it first"

    async def body(call: Client, port: int) -> None:
        status, data = await call("PUT", "/overrides", json={"target": "fra", "state": "up"})
        assert status == 400 and "fix it first" in data["error"]
        status, data = await call("DELETE", "/overrides/fra/1/2")
        assert status == 400

    run(backend, body)


class GuardedBackend(FakeBackend):
    """Guards refuse draining fra unless forced; dry runs say what they would do."""

    def __init__(self) -> None:
        super().__init__()
        self.dry_runs: list[tuple[str, str, float | None, bool]] = []

    def set_override(self, target: str, state: str, until: float | None,
                     force: bool = False) -> None:
        from geodns.health.overrides import GuardRefused

        if target == "fra" and state == "drain" and not force:
            raise GuardRefused(["min_up 2: pool www predicted 1 POP serving (iad), now 2; "
                                "down or drained: fra, sin"], None)
        super().set_override(target, state, until, force)

    def dry_run(self, target: str, state: str, until: float | None,
                force: bool = False) -> dict[str, Any]:
        self.dry_runs.append((target, state, until, force))
        return {"allowed": False, "broken": ["min_up 2: ..."], "pops": {"fra": {}}}

    def traffic_mix(self) -> TrafficMix:
        return TrafficMix(entries=(MixEntry("www", 1, "81.2.69.0", 24, 2.5),),
                          window_seconds=60.0)


def test_guards_refuse_409_force_dry_run_and_mix() -> None:
    backend = GuardedBackend()

    async def body(call: Client, port: int) -> None:
        status, data = await call("PUT", "/overrides", json={"target": "fra",
                                                            "state": "drain"})
        assert status == 409 and data["ok"] is False
        assert data["refused"] == ["min_up 2: pool www predicted 1 POP serving (iad), now "
                                   "2; down or drained: fra, sin"]
        assert data["error"].startswith("refused: it would break min_up 2")
        assert '"force": true' in data["error"]
        status, data = await call("PUT", "/overrides?dry_run=1",
                                  json={"target": "fra", "state": "drain", "until": "+1h"})
        assert status == 200 and data["dry_run"] and data["allowed"] is False
        assert data["target"] == "fra" and data["broken"] == ["min_up 2: ..."]
        assert backend.overrides == {}  # a dry run applies nothing
        status, data = await call("PUT", "/overrides", json={"target": "fra",
                                                            "state": "drain", "force": True})
        assert status == 200 and data["force"] is True
        status, data = await call("GET", "/traffic/mix")
        assert status == 200 and data["entries"][0]["client"] == "81.2.69.0"

    run(backend, body)
    assert backend.overrides == {"fra": ("drain", None)}
    (target, state, until, force), = backend.dry_runs
    assert (target, state, force) == ("fra", "drain", False) and until is not None


def test_unknown_path_and_big_body() -> None:
    backend = FakeBackend()

    async def body(call: Client, port: int) -> None:
        status, data = await call("GET", "/nope")
        assert status == 404 and data["ok"] is False
        status, data = await call("PUT", "/overrides", data=b"x" * (200 * 1024),
                                  headers={"Content-Type": "application/json"})
        assert status == 413

    run(backend, body)


def test_loopback_rejects_foreign_host_and_cross_site_writes() -> None:
    backend = FakeBackend()

    async def body(call: Client, port: int) -> None:
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1
        status, data = await call("GET", "/status", headers={"Host": f"evil.example:{port}"})
        assert status == 403 and "loopback" in data["error"]
        status, _ = await call("GET", "/status", headers={"Host": f"localhost:{port}"})
        assert status == 200
        # CSRF: a form on another site posting to the loopback listener
        status, data = await call("POST", "/reload",
                                  headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-site" in data["error"]
        status, data = await call("POST", "/reload", headers={"Origin": "null"})
        assert status == 403
        status, _ = await call("POST", "/reload",
                               headers={"Origin": f"http://127.0.0.1:{port}"})
        assert status == 200

    run(backend, body)
    assert backend.reloads == 1


def test_token_required_off_loopback() -> None:
    backend = FakeBackend()

    async def body(call: Client, port: int) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}):
            for method, path in (("GET", "/"), ("GET", "/metrics"), ("POST", "/reload"),
                                 ("DELETE", "/overrides/fra")):
                status, data = await call(method, path, headers=headers)
                assert status == 401, (method, path, headers)
                assert "Bearer" in data["error"]
        ok = {"Authorization": "Bearer s3cret"}
        status, _ = await call("GET", "/status", headers=ok)
        assert status == 200
        status, _ = await call("POST", "/reload", headers=ok)
        assert status == 200
        # the Host check is for the token-less loopback case only
        status, _ = await call("GET", "/metrics", headers={**ok, "Host": "dns1.example"})
        assert status == 200

    run(backend, body, token="s3cret", require_token=True)
    assert backend.reloads == 1


def test_refuses_non_loopback_without_token() -> None:
    async def go() -> None:
        for host in ("0.0.0.0", "::", "192.0.2.1"):
            with pytest.raises(ValueError, match="without a token"):
                await start_control(FakeBackend(), host, 0)
            with pytest.raises(ValueError, match="without a token"):
                await start_control(FakeBackend(), host, 0, token="")

    asyncio.run(go())


def test_page_served_without_browser() -> None:
    backend = FakeBackend()
    backend.metrics.answer("www", "iad")

    async def body(call: Client, port: int) -> None:
        status, (ctype, data) = await call("GET", "/")
        assert status == 200 and ctype.startswith("text/html")
        text = data.decode()
        assert 'class="pop state-drain"' in text and 'data-pop="fra"' in text
        assert "<script" in text and "http://" not in text.split("<body>")[1].split(
            "</script>")[0].replace(f"127.0.0.1:{port}", "")

    run(backend, body)
