"""Real loopback backends for the health tests: HTTP (aiohttp), TCP and DNS (UDP).

Each listens on 127.0.0.1 on a random free port, counts what it receives, and can be
told to misbehave: ``dead`` (stop listening: connection refused), ``hang`` (accept,
never answer), ``500``, ``wrong body`` for HTTP, ``servfail``/``silent`` for DNS.
Everything runs on the test's event loop and is stopped by ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.rcode
import dns.rrset
from aiohttp import web

from geodns.config import Config, parse_config

HOST = "127.0.0.1"
HEALTHY_BODY = "OK geodns-backend healthy"
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one test coroutine on a fresh loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def free_tcp_port(host: str = HOST) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def eventually(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Wait until ``pred()`` holds; return the seconds it took (AssertionError on timeout)."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - start


class HttpBackend:
    """aiohttp web server on a loopback port: GET /health answers per ``mode``."""

    def __init__(self, host: str = HOST, port: int | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port or free_tcp_port(host)
        self.ssl_context = ssl_context
        self.mode = "ok"  # ok | 500 | wrong body | hang | alternate (ok, 500, ok, ...)
        self.requests = 0
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Host)
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.seen.append((request.method, request.path, request.headers.get("Host")))
        if self.mode == "hang":
            await self._release.wait()
        if self.mode == "alternate" and self.requests % 2 == 0:
            return web.Response(status=500, text="flapping")
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode == "wrong body":
            return web.Response(text="maintenance page")
        return web.Response(text=HEALTHY_BODY)

    async def start(self) -> HttpBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.1)
        await self._runner.setup()
        await self.listen()
        return self

    async def listen(self) -> None:
        """(Re)open the listening socket on the same port."""
        assert self._runner is not None
        self._release = asyncio.Event()
        self._site = web.TCPSite(self._runner, self.host, self.port,
                                 ssl_context=self.ssl_context, reuse_address=True)
        await self._site.start()

    async def kill(self) -> None:
        """Stop listening: new connections are refused."""
        self._release.set()
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def revive(self) -> None:
        self.mode = "ok"
        self._release.set()  # hanging requests finish; later hangs need a fresh event
        self._release = asyncio.Event()
        if self._site is None:
            await self.listen()

    def hang(self) -> None:
        self.mode = "hang"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class TcpBackend:
    """A TCP listener that accepts and closes; counts connections."""

    def __init__(self, host: str = HOST, port: int | None = None) -> None:
        self.host = host
        self.port = port or free_tcp_port(host)
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def start(self) -> TcpBackend:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)
        return self

    async def kill(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def revive(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self.kill()


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, backend: DnsBackend) -> None:
        self.backend = backend
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        b = self.backend
        b.queries += 1
        if b.mode == "silent" or self.transport is None:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        if b.mode == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        else:
            q = query.question[0]
            reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "SOA",
                                                    "ns1. hm. 1 7200 3600 1209600 300"))
        self.transport.sendto(reply.to_wire(), addr)


class DnsBackend:
    """A UDP DNS responder: ``ok`` (SOA answer), ``servfail`` or ``silent``."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.port = 0
        self.mode = "ok"
        self.queries = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> DnsBackend:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DnsProtocol(self), local_addr=(self.host, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def self_signed(tmp: Path, cn: str = "health.test") -> tuple[Path, Path] | None:
    """A throw-away certificate made with the openssl CLI (None if it is missing)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


async def aclose_all(*closers: Callable[[], Awaitable[None]]) -> None:
    for close in closers:
        with contextlib.suppress(Exception):
            await close()


def config_from(toml: str, path: str | Path = "health-test.toml") -> Config:
    """A validated Config from TOML text (the same path the server uses)."""
    return parse_config(textwrap.dedent(toml), path)


class ThreadedHttpBackend:
    """An :class:`HttpBackend` on its own event loop in a thread, for synchronous tests
    that drive a real ``geodns serve`` subprocess.  Use as a context manager."""

    def __init__(self, host: str = HOST) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="health-backend")
        self.thread.start()
        self.backend = self._call(self._make(host))
        self.port = self.backend.port

    @staticmethod
    async def _make(host: str) -> HttpBackend:
        return await HttpBackend(host).start()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def requests(self) -> int:
        return self.backend.requests

    def kill(self) -> None:
        self._call(self.backend.kill())

    def revive(self) -> None:
        self._call(self.backend.revive())

    def set_mode(self, mode: str) -> None:
        self.loop.call_soon_threadsafe(setattr, self.backend, "mode", mode)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self.backend.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()

    def __enter__(self) -> ThreadedHttpBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
