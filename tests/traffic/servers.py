"""Loopback servers for the load feed tests: a JSON endpoint and a fake Prometheus API.

Both are aiohttp servers on 127.0.0.1 (random free port) on the test's event loop;
tests change what they answer between polls and read what they were asked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.requests: list[web.Request] = []
        self.hang = False
        self._release = asyncio.Event()

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._release.set()  # let hanging handlers finish so cleanup does not wait
        if self.runner is not None:
            await self.runner.cleanup()

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.wait_for(self._release.wait(), 30)


class LoadsEndpoint(_Server):
    """``GET /loads.json`` answers ``status`` with ``body`` (a dict is sent as JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.body: Any = {}
        self.app.router.add_get("/loads.json", self._handle)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/loads.json"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        await self._maybe_hang()
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return web.Response(status=self.status, text=text, content_type="application/json")


class FakePrometheus(_Server):
    """``GET /api/v1/query``: an instant vector of ``loads`` labelled ``label``, or an
    API error (``error``), as a Prometheus server answers."""

    def __init__(self, label: str = "pop") -> None:
        super().__init__()
        self.label = label
        self.loads: dict[str, float] = {}
        self.sample_time: float | None = None  # None: now, like an instant query
        self.error: tuple[int, str, str] | None = None  # (status, errorType, error)
        self.queries: list[str] = []
        self.app.router.add_get("/api/v1/query", self._handle)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        import time

        self.requests.append(request)
        self.queries.append(request.query.get("query", ""))
        await self._maybe_hang()
        if self.error is not None:
            status, kind, message = self.error
            return web.json_response({"status": "error", "errorType": kind,
                                      "error": message}, status=status)
        ts = self.sample_time if self.sample_time is not None else time.time()
        result = [{"metric": {self.label: pop, "job": "edge"}, "value": [ts, repr(v)]}
                  for pop, v in self.loads.items()]
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": result}})
