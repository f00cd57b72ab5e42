"""Probes: run one health check against one address and report pass/fail.

A probe never decides a state (the :mod:`tracker` does, with fall/rise hysteresis);
it only says whether this one attempt passed, why not, and how long it took.  Every
probe is bounded by the check's ``timeout`` here, whatever the protocol does, so a
hanging backend costs at most that long and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from dataclasses import dataclass
from typing import Final

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from geodns.config import Check
from geodns.health.procs import READ_LIMIT, run_contained

__all__ = [
    "BODY_LIMIT",
    "DEFAULT_PORTS",
    "ProbeResult",
    "check_port",
    "make_session",
    "run_check",
]

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "dns": 53}
BODY_LIMIT: Final = 64 * 1024  # expect_body is searched in the first 64 KiB only
_STDERR_TAIL: Final = 200  # characters of an external command's stderr kept in the reason
_USER_AGENT: Final = "geodns-health/1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One attempt: passed or not, a short human reason, and the latency in seconds."""

    ok: bool
    reason: str
    latency: float

    @property
    def latency_ms(self) -> int:
        """Latency rounded to whole milliseconds, for logs and status."""
        return round(self.latency * 1000)


def check_port(check: Check) -> int | None:
    """The port a check probes (config defaults already applied; None for external)."""
    if check.port is not None:
        return check.port
    return DEFAULT_PORTS.get(check.type)


def make_session() -> aiohttp.ClientSession:
    """One shared HTTP client for every http/https probe.

    ``force_close``: a fresh connection per probe, so a dead or wedged backend is
    seen as such instead of hiding behind a pooled keep-alive socket.  Proxies from
    the environment are ignored (``trust_env=False``): probes go straight to the target.
    """
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, trust_env=False,
                                 headers={"User-Agent": _USER_AGENT},
                                 auto_decompress=True)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def run_check(check: Check, address: str | None, *,
                    session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Run ``check`` against ``address`` once, bounded by ``check.timeout``.

    Never raises for a failing target: refusals, resets, timeouts, TLS errors and
    bad answers all come back as ``ok=False`` with a reason.  ``session`` is needed
    for http/https (one is made and closed on the fly if missing, e.g. in tests).
    """
    start = time.monotonic()
    own_session = None
    try:
        if check.type in ("http", "https") and session is None:
            own_session = session = make_session()
        try:
            async with asyncio.timeout(check.timeout):
                ok, reason = await _dispatch(check, address, session)
        except TimeoutError:
            ok, reason = False, f"timeout after {check.timeout}s"
        except Exception as exc:  # a probe must never take the monitor down
            ok, reason = False, _describe(exc)
    finally:
        if own_session is not None:
            await own_session.close()
    return ProbeResult(ok, reason, time.monotonic() - start)


async def _dispatch(check: Check, address: str | None,
                    session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    if check.type == "external":
        return await _external(check, address)
    if address is None:
        return False, "no address to probe"
    port = check_port(check)
    if port is None:
        return False, "no port to probe"
    if check.type == "tcp":
        return await _tcp(address, port)
    if check.type == "dns":
        return await _dns(check, address, port)
    assert session is not None
    return await _http(check, address, port, session)


# --------------------------------------------------------------------------- tcp


async def _tcp(address: str, port: int) -> tuple[bool, str]:
    """Connect and close: the port accepts connections."""
    _, writer = await asyncio.open_connection(address, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "connected"


# --------------------------------------------------------------------------- http


async def _http(check: Check, address: str, port: int,
                session: aiohttp.ClientSession) -> tuple[bool, str]:
    """One request; status must be in expect_status, body must contain expect_body."""
    url = f"{check.type}://{_url_host(address)}:{port}{check.path}"
    headers = {"Host": check.host} if check.host else {}
    https = check.type == "https"
    async with session.request(
        check.method, url, headers=headers, allow_redirects=False,
        ssl=check.tls_verify if https else True,
        server_hostname=check.host if https else None,
    ) as resp:
        status = resp.status
        if status not in check.expect_status:
            want = ",".join(str(s) for s in check.expect_status)
            return False, f"HTTP {status} (expected {want})"
        if check.expect_body is not None:
            body = await resp.content.read(BODY_LIMIT)
            try:
                text = body.decode(resp.charset or "utf-8", errors="replace")
            except LookupError:  # unknown charset label: bytes as latin-1 still match ASCII
                text = body.decode("latin-1")
            if check.expect_body not in text:
                return False, "body mismatch"
    return True, f"HTTP {status}"


# --------------------------------------------------------------------------- dns


async def _dns(check: Check, address: str, port: int) -> tuple[bool, str]:
    """One UDP query; the reply's rcode must be expect_rcode."""
    query = dns.message.make_query(check.qname, check.qtype, use_edns=0)
    reply = await dns.asyncquery.udp(query, address, port=port, timeout=check.timeout)
    rcode = dns.rcode.to_text(reply.rcode())
    answers = sum(len(rrset) for rrset in reply.answer)
    if rcode != check.expect_rcode.upper():
        return False, f"rcode {rcode} (expected {check.expect_rcode.upper()})"
    return True, f"rcode {rcode}, {answers} answer{'s' if answers != 1 else ''}"


# --------------------------------------------------------------------------- external


async def _external(check: Check, address: str | None) -> tuple[bool, str]:
    """Run the command; exit 0 is up.  Contained by :mod:`geodns.health.procs`: the
    exit status decides (not the pipes closing), output is bounded, and the whole
    process tree is killed on exit, on timeout and with geodns."""
    if not check.command:
        return False, "no command"
    env = dict(os.environ)
    env["GEODNS_CHECK"] = check.name
    if address is not None:
        env["GEODNS_ADDRESS"] = address
    port = check_port(check)
    if port is not None:
        env["GEODNS_PORT"] = str(port)
    result = await run_contained(check.command, env)
    code = result.code
    if code == 0:
        return True, "exit 0"
    if result.overflow:
        detail = f": stderr over {READ_LIMIT // 1024} KiB, pipe closed"
    else:
        tail = result.stderr.decode(errors="replace").strip().splitlines()
        last = "".join(c if c.isprintable() else "?" for c in tail[-1][:_STDERR_TAIL]) \
            if tail else ""
        detail = f": {last}" if last else ""
    if code < 0:
        return False, f"killed by signal {-code}{detail}"
    return False, f"exit {code}{detail}"


# --------------------------------------------------------------------------- reasons


def _describe(exc: BaseException) -> str:
    """A short reason an operator understands ("connection refused", not a traceback)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _describe(exc.os_error)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "bad HTTP body"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, dns.exception.DNSException):
        return f"bad DNS reply: {exc}"
    if isinstance(exc, OSError):
        if exc.strerror:
            return exc.strerror.lower()
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

