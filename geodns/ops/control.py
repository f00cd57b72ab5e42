"""The control listener: metrics, status, reload and health overrides over HTTP.

An aiohttp app the server runs on ``[server] http`` (default 127.0.0.1:8053).  The
server stays the owner of every live object; this module talks to it only through
:class:`ControlBackend`, so it is tested against a fake.

Security model:

* loopback listener (the default): no token, but requests whose ``Host`` is not a
  loopback name/address are refused (DNS rebinding), and writes carrying an
  ``Origin`` of another site are refused (a web page cannot POST /reload via the
  operator's browser);
* any other listener address needs a token (we refuse to start without one) and
  every request must carry ``Authorization: Bearer <token>``;
* every write (reload, override set/clear) is logged with the client address.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from geodns.config.serve import control_token_problem, is_loopback
from geodns.health.override_rules import (
    OverrideError,
    format_time,
    match_targets,
    parse_pattern,
    parse_request,
)
from geodns.health.overrides import GuardRefused
from geodns.health.snapshot import key_label
from geodns.logs import event
from geodns.ops.metrics import CONTENT_TYPE, Metrics
from geodns.ops.page import render_page
from geodns.ops.status import PopStatus, Status, TrafficMix, to_json
from geodns.service import bind_error
from geodns.tasks import cancel

__all__ = [
    "ControlBackend",
    "make_app",
    "start_control",
    "stop_control",
]

log = logging.getLogger("geodns.control")

TICK_SECONDS: Final = 5.0  # how often the per-minute answer history is advanced
MAX_BODY: Final = 64 * 1024

BACKEND_KEY: Final = web.AppKey("backend", object)  # a ControlBackend (Protocols are no keys)
OPTIONS_KEY: Final = web.AppKey("options", dict)


class ControlBackend(Protocol):
    """What the server exposes to the control API.

    ``status()`` is the whole typed :class:`~geodns.ops.status.Status` (built once per
    request by :mod:`geodns.ops.status_build`): ``GET /status`` is its JSON, the page
    renders it.  ``set_override``/``clear_override`` may be plain or ``async``
    methods; they raise ``ValueError`` on bad input, which the API turns into a 400
    with the message, and :class:`~geodns.health.overrides.GuardRefused` when a guard
    refuses (409).  ``dry_run`` answers what an override would do (per POP current
    and predicted qps and share, and what it would break); ``traffic_mix`` is the
    recent answer mix.
    """

    metrics: Metrics

    def status(self) -> Status: ...

    async def reload(self) -> tuple[bool, list[str]]: ...

    def set_override(self, target: str, state: str, until: float | None,
                     force: bool = False) -> Awaitable[object] | None: ...

    def dry_run(self, target: str, state: str, until: float | None,
                force: bool = False) -> dict[str, Any]: ...

    def traffic_mix(self) -> TrafficMix: ...

    def clear_override(self, target: str) -> Awaitable[bool] | bool: ...


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error": message, **extra}, status=status)


def _host_name(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8053`` -> ``::1``)."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _client(request: web.Request) -> str:
    return request.remote or "?"


# --------------------------------------------------------------------------- middleware


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Token (non-loopback listener), Host and Origin checks, JSON errors."""
    opts = request.app[OPTIONS_KEY]
    token: str | None = opts["token"]
    if opts["require_token"]:
        got = request.headers.get("Authorization", "")
        scheme, _, value = got.partition(" ")
        if (token is None or scheme.lower() != "bearer"
                or not hmac.compare_digest(value.strip().encode(), token.encode())):
            log.warning("control: %s %s from %s refused: missing or wrong bearer token",
                        request.method, request.path, _client(request),
                        extra=event("control", action="refused", client=_client(request),
                                    method=request.method, path=request.path,
                                    why="token"))
            return web.json_response({"ok": False, "error": "unauthorized: send "
                                      "'Authorization: Bearer <token>'"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
    else:
        if not is_loopback(_host_name(request.host)):
            return _error(403, f"Host {request.host!r} is not a loopback address "
                          "(the control listener only serves local clients)")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null":
            netloc = urlsplit(origin).netloc
            if netloc.lower() != request.host.lower():
                log.warning("control: %s %s from %s refused: cross-site Origin %s",
                            request.method, request.path, _client(request), origin,
                            extra=event("control", action="refused",
                                        client=_client(request), method=request.method,
                                        path=request.path, why="origin"))
                return _error(403, f"cross-site request from Origin {origin!r} refused")
        elif origin == "null":
            return _error(403, "requests from an opaque Origin are refused")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # errors are always JSON, even our own bugs
        log.exception("control: %s %s from %s failed", request.method, request.path,
                      _client(request))
        return _error(500, f"internal error: {type(exc).__name__}; see the server log")


# --------------------------------------------------------------------------- handlers


def _backend(request: web.Request) -> ControlBackend:
    backend: ControlBackend = request.app[BACKEND_KEY]  # type: ignore[assignment]
    return backend


def _json(data: object) -> str:
    return json.dumps(to_json(data), default=str)


async def _fresh(backend: ControlBackend) -> None:
    """Workers' counters as of now (a node with worker processes), before reading."""
    refresh = getattr(backend, "refresh", None)
    if refresh is not None:
        await refresh()


async def _get_status(request: web.Request) -> web.Response:
    await _fresh(_backend(request))
    return web.json_response(_backend(request).status(), dumps=_json)


async def _get_page(request: web.Request) -> web.Response:
    await _fresh(_backend(request))
    page = render_page(_backend(request).status())
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy": "default-src 'none'; "
                                 "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                 "connect-src 'self'; img-src 'self' data:",
                                 "X-Frame-Options": "DENY"})


async def _get_metrics(request: web.Request) -> web.Response:
    await _fresh(_backend(request))
    body = _backend(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _post_reload(request: web.Request) -> web.Response:
    backend = _backend(request)
    client = _client(request)
    log.info("control: reload requested by %s", client)
    ok, problems = await backend.reload()
    if ok:
        log.info("control: reload by %s succeeded", client,
                 extra=event("control", action="reload", client=client, ok=True))
        return web.json_response({"ok": True, "problems": []})
    log.warning("control: reload by %s failed (%d problems)", client, len(problems),
                extra=event("control", action="reload", client=client, ok=False,
                            problems=len(problems)))
    return web.json_response({"ok": False, "error": "reload failed; still serving the "
                              "previous zones and config", "problems": problems},
                             status=422)


def _matches(pattern: str, pops: Sequence[PopStatus]) -> list[str]:
    """Targets among the status POPs that ``pattern`` selects (as ``fra``/``fra/addr``)."""
    listed = ((pop.name, [a.address for a in pop.addresses]) for pop in pops)
    return [key_label(key) for key in match_targets(pattern, listed)]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _put_override(request: web.Request) -> web.Response:
    backend = _backend(request)
    raw = await request.read()
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    except RecursionError:
        return _error(400, "body is not valid JSON: nested too deeply")
    try:
        rule = parse_request(body, time.time())
    except OverrideError as exc:
        return _error(400, str(exc))
    pattern, state, until, force = rule.pattern, rule.state, rule.until, rule.force
    pops = backend.status().pops
    matched = _matches(pattern, pops)
    if not matched:
        known = ", ".join(p.name for p in pops)
        return _error(400, f"target {pattern!r} matches no POP or address "
                      f"(POPs: {known or 'none'})")
    until_text = format_time(until) if until is not None else None
    if request.query.get("dry_run", "") not in ("", "0", "false"):
        try:
            report = backend.dry_run(pattern, state, until, force)
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response({"ok": True, "dry_run": True, "target": pattern,
                                  "state": state, "until": until_text, "matches": matched,
                                  **report}, dumps=lambda o: json.dumps(o, default=str))
    try:
        await _maybe_await(backend.set_override(pattern, state, until, force))
    except GuardRefused as exc:
        log.warning("control: override %s %s by %s refused by guards: %s", pattern, state,
                    _client(request), "; ".join(exc.problems),
                    extra=event("control", action="refused", client=_client(request),
                                target=pattern, state=state, why="guard"))
        return web.json_response(
            {"ok": False, "error": "refused: it would break " + "; ".join(exc.problems)
             + ' (send "force": true to apply it anyway: break glass, logged and counted)',
             "refused": exc.problems}, status=409)
    except ValueError as exc:
        return _error(400, str(exc))
    log.info("control: override %s %s%s%s set by %s", pattern, state,
             f" until {until_text}" if until_text else "", " (forced)" if force else "",
             _client(request),
             extra=event("control", action="override_set", client=_client(request),
                         target=pattern, state=state, until=until_text, force=force))
    return web.json_response({"ok": True, "target": pattern, "state": state,
                              "until": until_text, "force": force, "matches": matched})


async def _get_mix(request: web.Request) -> web.Response:
    return web.json_response(_backend(request).traffic_mix(), dumps=_json)


async def _delete_override(request: web.Request) -> web.Response:
    backend = _backend(request)
    target = request.match_info["target"]
    try:
        pattern = parse_pattern(target)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        had = await _maybe_await(backend.clear_override(pattern))
    except ValueError as exc:
        return _error(400, str(exc))
    if not had:
        return _error(404, f"no override for {pattern!r}")
    log.info("control: override %s cleared by %s", pattern, _client(request),
             extra=event("control", action="override_clear", client=_client(request),
                         target=pattern))
    return web.json_response({"ok": True, "target": pattern})


# --------------------------------------------------------------------------- app


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    """Advance the per-minute answer history while the app runs."""
    backend: ControlBackend = app[BACKEND_KEY]  # type: ignore[assignment]

    async def loop() -> None:
        while True:
            try:
                backend.metrics.tick()
            except Exception:  # never let a bad counter kill the ticker
                log.exception("control: answer history tick failed")
            await asyncio.sleep(TICK_SECONDS)

    task = asyncio.get_running_loop().create_task(loop(), name="geodns-control-tick")
    yield
    await cancel(task)


def make_app(backend: ControlBackend, *, token: str | None = None,
             require_token: bool = False) -> web.Application:
    """The aiohttp application (``require_token``: every request needs the bearer token)."""
    if require_token and not token:
        raise ValueError("a token is required")
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY)
    app[BACKEND_KEY] = backend
    app[OPTIONS_KEY] = {"token": token, "require_token": require_token}
    app.router.add_get("/", _get_page)
    app.router.add_get("/status", _get_status)
    app.router.add_get("/metrics", _get_metrics)
    app.router.add_post("/reload", _post_reload)
    app.router.add_put("/overrides", _put_override)
    app.router.add_get("/traffic/mix", _get_mix)
    app.router.add_delete("/overrides/{target:.+}", _delete_override)
    app.cleanup_ctx.append(_ticker)
    return app


async def start_control(backend: ControlBackend, host: str, port: int,
                        token: str | None = None,
                        sock: socket.socket | None = None) -> web.AppRunner:
    """Serve the control API on ``host:port`` (port 0: any; see ``bound_port``).

    A non-loopback ``host`` requires ``token`` (ValueError otherwise) and then every
    request must present it; on loopback the token is not needed.
    """
    loopback = is_loopback(host)
    problem = control_token_problem(host, token)
    if problem is not None:
        raise ValueError(f"refusing to start: {problem} (off loopback it would answer "
                         "anyone without a token: set one, or listen on 127.0.0.1)")
    app = make_app(backend, token=token, require_token=not loopback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite = web.SockSite(runner, sock) if sock is not None else \
        web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise bind_error(exc, host, port, "control API") from None
    except BaseException:
        await runner.cleanup()
        raise
    log.info("control API on http://%s:%d/%s", f"[{host}]" if ":" in host else host,
             bound_port(runner), "" if loopback else " (bearer token required)")
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site listens on (useful after port 0)."""
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("control listener is not running")


async def stop_control(runner: web.AppRunner) -> None:
    """Stop the listener and the history ticker."""
    await runner.cleanup()
