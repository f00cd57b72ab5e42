"""Server lifecycle: sockets, reloads that never hurt, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass, field

import aiofiles
from aiohttp import web

from geodns.config import Config, load_config, parse_hostport
from geodns.defences import Defences
from geodns.geo import FileKey, file_key
from geodns.handler import Handler, State
from geodns.health.monitor import HealthMonitor
from geodns.health.snapshot import HealthSnapshot
from geodns.listeners.tcp import TCPConnections, TCPLimits
from geodns.listeners.udp import UDPProtocol
from geodns.ops.backend import ServerBackend
from geodns.ops.control import start_control, stop_control
from geodns.ops.metrics import Metrics
from geodns.ops.querylog import QueryLog
from geodns.problems import Problems
from geodns.runtime import HealthHolder, Runtime, cross_check
from geodns.zones.load import ZoneFileError
from geodns.zones.store import ZoneStore, build_store, zone_paths

log = logging.getLogger("geodns")

Endpoint = tuple[str, int]


def parse_listen(text: str) -> Endpoint:
    """A `--listen` or `--http` flag: an address as in the config, but the port is
    required and may be 0 (any free port)."""
    try:
        host, port = parse_hostport(text, None, min_port=0)
    except ValueError as exc:
        raise ValueError(f"bad listen address {text!r}: {exc}") from None
    return host, port


@dataclass
class ServeOptions:
    zones_dir: str
    listen: list[Endpoint]
    config_path: str | None = None
    udp_size: int = 1232
    tcp: TCPLimits = field(default_factory=TCPLimits)
    watch_interval: float = 1.0
    http: Endpoint | None = None  # control API / metrics listener
    http_token: str | None = None


def _socket(host: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if kind == socket.SOCK_DGRAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def read_texts(directory: str) -> dict[str, str]:
    """Read every zone file without blocking the event loop."""
    texts: dict[str, str] = {}
    problems: list[str] = []
    try:
        paths = await asyncio.get_running_loop().run_in_executor(None, zone_paths, directory)
    except OSError as exc:
        raise ZoneFileError([f"{directory}:0: cannot read zones directory: {exc}"]) from None
    for path in paths:
        try:
            async with aiofiles.open(path, encoding="utf-8") as f:
                texts[path] = await f.read()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}:0: cannot read: {exc}")
    if problems:
        raise ZoneFileError(problems)
    return texts


def _fingerprint(paths: list[str]) -> dict[str, FileKey]:
    """The identity of every watched file that exists (the same one GeoDB uses)."""
    return {p: key for p in paths if (key := file_key(p)) is not None}


class Server:
    """Owns the sockets, the current State, and the reload/watch tasks."""

    def __init__(self, opts: ServeOptions, store: ZoneStore, config: Config | None = None) -> None:
        self.opts = opts
        self.health = HealthHolder()
        self.config = config or Config.default()
        self.runtime = Runtime.load(self.config, self.health)
        self.monitor = HealthMonitor(self.config, on_change=self._health_changed)
        self.health.snapshot = self.monitor.snapshot
        self.metrics = Metrics()
        ql = self.config.querylog
        self.qlog = QueryLog(ql.path, sample=ql.sample, max_bytes=ql.max_bytes, keep=ql.keep,
                             queue_size=ql.queue, metrics=self.metrics) if ql.path else None
        self.handler = Handler(self.make_state(store, self.runtime),
                               on_answer=self.metrics.on_answer, metrics=self.metrics,
                               qlog=self.qlog)
        self.metrics.cache_source = lambda: (self.handler.state.hits, self.handler.state.misses)
        self.handler.guard = Defences.build(self.config, self.metrics)  # RRL, cookies
        self.backend = ServerBackend(self, self.metrics, self.monitor)
        self.control: web.AppRunner | None = None
        self.tcp = TCPConnections(self.handler, opts.tcp)
        self.transports: list[asyncio.BaseTransport] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.stopping = asyncio.Event()
        self.reload_lock = asyncio.Lock()
        self.last_reload_error: list[str] = []

    @property
    def store(self) -> ZoneStore:
        return self.handler.state.store

    def _health_changed(self, snapshot: HealthSnapshot) -> None:
        # The selector keys its decisions on the snapshot's cache token and rendered
        # answers on the selection itself, so publishing is all it takes.
        self.health.snapshot = snapshot
        self.handler.health_changed()
        self.backend.on_health(snapshot)

    def _install(self, state: State) -> None:
        old = self.handler.state
        self.handler.state = state
        self.metrics.cache_retired(old.hits, old.misses)

    def make_state(self, store: ZoneStore, runtime: Runtime) -> State:
        select = runtime.select if runtime.config.pools else None
        return State(store, self.opts.udp_size, select=select, explain=runtime.explain_lines,
                     explain_allowed=runtime.config.explain.allows)

    def _load_config(self) -> Config:
        if self.opts.config_path is None:
            return self.config
        return load_config(self.opts.config_path)

    def _new_runtime(self, config: Config) -> Runtime:
        """Reuse the open GeoIP database unless its path or file changed."""
        old = self.runtime
        geo = old.geo
        if geo is not None and (geo.changed() or geo.path != config.geoip.database):
            geo = None
        return Runtime.load(config, self.health, geo)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.opts.listen:
            usock = _socket(host, port, socket.SOCK_DGRAM)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UDPProtocol(self.handler), sock=usock)
            self.transports.append(transport)
            if port == 0:  # tests ask for any port: TCP must use the same one
                port = usock.getsockname()[1]
            tsock = _socket(host, port, socket.SOCK_STREAM)
            server = await loop.create_server(self.tcp.protocol, sock=tsock, backlog=1024)
            self.servers.append(server)
            log.info("listening on %s port %d (udp, tcp)", host, port)

    async def reload(self, reason: str) -> bool:
        """Build complete new zones, config and selector and swap them in, or keep the old."""
        async with self.reload_lock:
            loop = asyncio.get_running_loop()
            try:
                config = await loop.run_in_executor(None, self._load_config)
                texts = await read_texts(self.opts.zones_dir)
                store = await loop.run_in_executor(None, build_store, texts)
                problems = cross_check(store, config)
                if problems:
                    raise ZoneFileError(problems)
                runtime = await loop.run_in_executor(None, self._new_runtime, config)
            except Problems as exc:  # zones, config or GeoIP database, all located
                return self._reload_failed(reason, exc.problems)
            except Exception as exc:  # the last line of defence: never lose the old state
                return self._reload_failed(reason, [f"{type(exc).__name__}: {exc}"])
            if config.server != self.config.server:
                log.warning("reload: [server] settings (listeners, sizes, control API) changed; "
                            "they take effect at the next restart")
            self.config, self.runtime = config, runtime
            self._install(self.make_state(store, runtime))
            self.handler.guard = Defences.build(config, self.metrics, self.handler.guard)
            self.monitor.update_config(config)
            self.backend.on_reloaded(True)
            self.last_reload_error = []
            serials = ", ".join(f"{z} {s}" for z, s in sorted(store.serials().items()))
            log.info("reload (%s): serving %d zones: %s", reason, len(store.zones), serials)
            return True

    def _reload_failed(self, reason: str, problems: list[str]) -> bool:
        self.last_reload_error = problems
        for problem in problems:
            log.error("%s", problem)
        log.error("reload (%s) failed; still serving the previous zones and config", reason)
        self.backend.on_reloaded(False)
        return False

    def _watched(self) -> list[str]:
        try:
            paths = zone_paths(self.opts.zones_dir)
        except OSError:
            paths = []
        extra: set[str] = set()
        if self.opts.config_path:
            extra.add(self.opts.config_path)
        geo_path = self.runtime.geo_path()
        if geo_path is not None:
            extra.add(str(geo_path))
        return sorted(set(paths) | self.store.files() | extra | {self.opts.zones_dir})

    async def watch(self) -> None:
        """Poll file metadata; reload once a change has settled for one interval."""
        interval = self.opts.watch_interval
        seen = _fingerprint(self._watched())
        pending: dict[str, FileKey] | None = None
        while not self.stopping.is_set():
            await asyncio.sleep(interval)
            try:
                seen, pending = await self._watch_step(seen, pending)
            except Exception:  # the watcher must outlive any one bad change
                log.exception("file watcher error; still watching")

    async def _watch_step(
        self, seen: dict[str, FileKey], pending: dict[str, FileKey] | None,
    ) -> tuple[dict[str, FileKey], dict[str, FileKey] | None]:
        """One poll: returns the new (seen, pending) fingerprints."""
        now = _fingerprint(self._watched())
        if now == seen:
            return seen, None
        if pending != now:  # still changing: wait for it to settle
            return seen, now
        await self.reload("files changed")
        return _fingerprint(self._watched()), None

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP,
                                lambda: loop.create_task(self.reload("SIGHUP")))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watcher = loop.create_task(self.watch())
        await self.monitor.start()
        if self.qlog is not None:
            await self.qlog.start()
            log.info("query log: %s (sample %s)", self.qlog.path, self.qlog.sample_rate)
        http = self.opts.http
        if http is not None:
            self.control = await start_control(self.backend, http[0], http[1],
                                               self.opts.http_token)
        log.info("geodns ready: %d zones", len(self.store.zones))
        await self.stopping.wait()
        watcher.cancel()
        await self.monitor.stop()
        if self.control is not None:
            await stop_control(self.control)
        if self.qlog is not None:
            await self.qlog.stop()
        await self.close()

    async def close(self) -> None:
        for t in self.transports:
            t.close()
        for s in self.servers:
            s.close()
        self.tcp.close_all()
        for s in self.servers:
            await s.wait_closed()
        log.info("geodns stopped")
