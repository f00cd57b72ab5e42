"""Server lifecycle: sockets, reloads that never hurt, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.name
from aiohttp import web

from geodns.config import Config, load_config
from geodns.defences import Defences
from geodns.generation import Generation
from geodns.handler import Handler
from geodns.health.monitor import HealthMonitor
from geodns.health.snapshot import HealthHolder, HealthSnapshot
from geodns.listeners.tcp import TCPConnections, TCPLimits
from geodns.listeners.udp import UDPReader
from geodns.ops.backend import ServerBackend
from geodns.ops.control import start_control, stop_control
from geodns.ops.dnstap import Dnstap
from geodns.ops.metrics import Metrics
from geodns.ops.querylog import QueryLog, reopen_logs
from geodns.ops.serving import ReloadOutcome, ServingView
from geodns.ops.status import NodeStatus
from geodns.problems import Problems
from geodns.runtime import Runtime, cross_check
from geodns.select.inputs import needs_asn
from geodns.service import BindError, Service, version
from geodns.traffic.steering import Steering
from geodns.watch import FileKeys, FileWatcher, file_keys
from geodns.workers.sockets import Listener, bind, grow, takeover_path
from geodns.workers.takeover import Successor, TakeoverPoint, running_pid
from geodns.xfr.service import XfrService, merge_zones
from geodns.zones.load import ZoneFileError
from geodns.zones.loader import ZoneLoader
from geodns.zones.store import ZoneStore, zone_paths
from geodns.zones.zone import Zone

log = logging.getLogger("geodns")

Endpoint = tuple[str, int]

DRAIN_SECONDS = 5.0  # replaced: how long open TCP connections may take to finish


def retire_zones(zones: list[Zone]) -> None:
    """Free zones that are no longer served from a worker thread, a slice at a time:
    dropping a million records at once would hold the interpreter for tens of ms.

    A zone is only emptied once nothing else refers to it (a transfer journal may still
    be reading it); until then it is left alone, and after a minute simply dropped."""
    pending = list(zones)
    zones.clear()  # the caller's list must not keep them alive
    for _ in range(60):
        busy = []
        while pending:
            zone = pending.pop()
            if sys.getrefcount(zone) > 2:  # this name and the call's argument: in use
                busy.append(zone)
                continue
            nodes = zone.nodes
            while nodes:
                for _ in range(min(20_000, len(nodes))):
                    nodes.popitem()
                time.sleep(0)  # let the serving thread run
            del zone, nodes
        if not busy:
            return
        pending = busy
        del busy
        time.sleep(1.0)


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
    service: Service | None = None  # [operator hook] sd_notify, --user (geodns/service.py)
    workers: int = 1  # DNS worker processes (1: this process answers; geodns/workers/)
    replace: bool = False  # take the sockets of the server running on these ports


def successor_args(args: list[str]) -> list[str]:
    """Our arguments for a replacement: ``--replace`` added, ``--user`` dropped once we
    are no longer root (the replacement starts as the user we became)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if os.geteuid() != 0 and arg == "--user":
            skip = True
            continue
        if os.geteuid() != 0 and arg.startswith("--user="):
            continue
        out.append(arg)
    return out if "--replace" in out else [*out, "--replace"]


def _inputs_key(config: Config) -> FileKeys:
    """The files besides the config a runtime is compiled from (the ASN database)."""
    path = needs_asn(config)
    return file_keys([str(path)]) if path is not None else {}


class Server:
    """Owns the sockets, the reload/watch tasks and the lifecycle.  What is served is
    one :class:`Generation` (``handler.generation``) swapped whole by :meth:`_install`;
    ``config``, ``runtime``, ``store`` and ``file_store`` read it."""

    def __init__(self, opts: ServeOptions, store: ZoneStore, config: Config | None = None,
                 loader: ZoneLoader | None = None) -> None:
        self.opts = opts
        # Reloads re-read only the zone files that changed (and their $INCLUDEs).
        self.loader = loader or ZoneLoader(opts.zones_dir)
        config = config or Config.default()
        self.health = HealthHolder()  # published apart from the generation
        # [traffic hook] loads, spill, latency maps, answer mix, guards (issue 12)
        self.steering = Steering(config)
        runtime = Runtime.load(config, steering=self.steering, inputs_key=_inputs_key(config))
        self.monitor = self._health_monitor(config)
        self.health.snapshot = self.monitor.snapshot
        self.metrics = Metrics(version=version())
        self.qlog = self._query_log(QueryLog, config)
        # xfr hook: zone transfers.  The generation's files are the zones read from
        # files; its store adds the secondary zones (geodns.xfr.service.merge_zones).
        self.xfr = self._xfr_service(config)
        served = self._first_store(store, config)
        self.handler = Handler(self.make_generation(runtime, store, served),
                               metrics=self.metrics, qlog=self.qlog, health=self.health)
        self.handler.other_opcode = self.xfr.other_opcode  # xfr hook: NOTIFY, UPDATE, ...
        self.handler.signed_query = self.xfr.signed_query  # xfr hook: TSIG on queries
        self.handler.expire_of = self.xfr.expire_remaining  # xfr hook: EDNS EXPIRE
        self.metrics.cache_source = lambda: (self.handler.generation.hits,
                                             self.handler.generation.misses)
        # [operator hooks] service manager / privileges, and dnstap (wraps handler.handle)
        self.service = opts.service or Service()
        self.dnstap = self._dnstap(Dnstap)
        if self.dnstap is not None:
            self.handler.tap(self.dnstap.wrap)
        self.handler.guard = Defences.build(self.config, self.metrics)  # RRL, cookies
        self.steering.attach(self.handler, self.monitor, self.metrics,  # [traffic hook]
                             lambda: self.runtime, control=opts.http is not None)
        self.backend = self._make_backend()
        self.control: web.AppRunner | None = None
        self.tcp = TCPConnections(self.handler, opts.tcp)
        self.tcp.xfr = self.xfr.tcp_transfer  # xfr hook: AXFR/IXFR over TCP
        self.readers: list[UDPReader] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.listeners: list[Listener] = []  # every socket we listen on (kept for --replace)
        self.successor: Successor | None = None  # --replace: the old server, told when ready
        self.takeover: TakeoverPoint | None = None
        self.replaced = False  # a new server took our sockets: drain, then exit
        self.stopping = asyncio.Event()
        self.reload_lock = asyncio.Lock()
        # zones, config, GeoIP and ASN databases, as loaded: edits from now on reload
        self.watcher = FileWatcher(self._watched, self._files_changed,
                                   interval=opts.watch_interval, logger=log)
        self.last_reload_error: list[str] = []

    # What is served, all read through the one reference (handler.generation).
    @property
    def config(self) -> Config:
        return self.handler.generation.config

    @property
    def runtime(self) -> Runtime:
        runtime = self.handler.generation.runtime
        assert runtime is not None  # a server's generations always carry one
        return runtime

    @property
    def store(self) -> ZoneStore:
        return self.handler.generation.store

    @property
    def file_store(self) -> ZoneStore:
        """The zones read from files (the store adds the secondary zones)."""
        return self.handler.generation.files

    # [refactor hook] geodns.ops.serving.Serving: what the control side may read and ask
    def view(self) -> ServingView:
        return ServingView(self.config, self.store.serials(), self.health.snapshot,
                           self.runtime.geo, self.node_status())

    def node_status(self) -> NodeStatus | None:
        """Worker processes (the supervisor's); none when this process answers."""
        return None

    async def refresh_stats(self) -> None:
        """Counters are this process's own: always current."""

    async def request_reload(self, reason: str) -> ReloadOutcome:
        ok = await self.reload(reason)
        return ReloadOutcome(ok, () if ok else tuple(self.last_reload_error))

    def _health_monitor(self, config: Config) -> HealthMonitor:
        return HealthMonitor(config, on_change=self._health_changed)

    def _make_backend(self) -> ServerBackend:
        return ServerBackend(self, self.metrics, self.monitor, dnstap=self.dnstap,
                             steering=self.steering)  # [traffic hook] steering=

    def _xfr_service(self, config: Config) -> XfrService:
        return XfrService(config, self._install_secondary, self.metrics)

    def _first_store(self, files: ZoneStore, config: Config) -> ZoneStore:
        """The store served at start: the file zones plus the kept secondary copies."""
        return self.xfr.fitted_store(files, lambda s: cross_check(s, config))

    def _health_changed(self, snapshot: HealthSnapshot) -> None:
        # The selector keys its decisions on the snapshot's cache token and rendered
        # answers on the selection itself, so publishing is all it takes.
        self.health.snapshot = snapshot
        self.handler.health_changed()
        self.backend.on_health(snapshot)

    def _install(self, generation: Generation) -> None:
        """Serve ``generation`` from the next query on: the one swap of a reload."""
        old = self.handler.generation
        self.handler.generation = generation
        self.metrics.cache_retired(old.hits, old.misses)
        gone = [z for z in old.store.zones.values() if z not in generation.store.zones.values()]
        if gone:  # freeing a big zone takes tens of ms: not on the serving loop
            asyncio.get_running_loop().run_in_executor(None, retire_zones, gone)

    def _install_secondary(self, zones: Mapping[dns.name.Name, Zone]) -> list[str]:
        """xfr hook: serve the file zones plus exactly these secondary zones (one new
        store, swapped in whole), or keep the old store and return the problems."""
        try:
            store = merge_zones(self.file_store, zones)
        except ZoneFileError as exc:
            return exc.problems
        problems = cross_check(store, self.config)
        if problems:
            return problems
        self._install(self.make_generation(self.runtime, self.file_store, store))
        self.xfr.loaded(store)
        return []

    def make_generation(self, runtime: Runtime, files: ZoneStore,
                        store: ZoneStore) -> Generation:
        server = runtime.config.server
        return Generation(store, self.opts.udp_size, runtime=runtime,
                          explain_allowed=runtime.config.explain.allows,
                          additional=not server.minimal_responses, nsid=server.nsid,
                          files=files)

    def _load_config(self) -> Config:
        if self.opts.config_path is None:
            return self.config
        return load_config(self.opts.config_path)

    def _new_runtime(self, config: Config) -> Runtime:
        """Reuse the open GeoIP database unless its path or file changed, and the whole
        runtime (its compiled maps) when neither the config nor a file it reads did."""
        old = self.runtime
        geo = old.geo
        if geo is not None and (geo.changed() or geo.path != config.geoip.database):
            geo = None
        inputs = _inputs_key(config)
        if config == old.config and inputs == old.inputs_key and \
                (geo is not None or not config.pools):
            return old
        return Runtime.load(config, geo, steering=self.steering,  # [traffic hook]
                            inputs_key=inputs)

    def acquire(self, copies: int) -> list[Listener]:
        """Our listening sockets: the running server's (``--replace``) plus new ones,
        ``copies`` per DNS endpoint, and the control API's.  BindError when another
        geodns already serves these ports and we were not asked to replace it."""
        endpoints = self.opts.listen
        got: list[Listener] = []
        if self.opts.replace:
            self.successor = Successor(takeover_path(endpoints))
            got = self.successor.listeners
        elif endpoints and endpoints[0][1] != 0:
            pid = running_pid(takeover_path(endpoints))
            if pid is not None:
                host, port = endpoints[0]
                who = f"pid {pid}" if pid > 0 else "not answering"
                raise BindError(f"geodns ({who}) already serves {host} port {port}: stop "
                                "it first, or start with --replace to take over its ports "
                                "without dropping a query")
        listeners = grow([x for x in got if x.kind != "http"], endpoints, copies)
        http = self.opts.http
        for old in (x for x in got if x.kind == "http"):
            if http is not None and ((old.host, old.port) == http
                                     or (http[1] == 0 and old.host == http[0])):
                listeners.append(old)
                http = None
            else:
                old.sock.close()
        if http is not None:
            sock = bind(http[0], http[1], "http", reuseport=False)
            listeners.append(Listener("http", http[0], sock.getsockname()[1], sock))
        return listeners

    async def start(self) -> None:
        """Bind (or take over) the sockets and answer on them in this process."""
        self.listeners = self.acquire(1)
        await self.serve_on([x for x in self.listeners if x.kind != "http"])

    async def serve_on(self, listeners: list[Listener]) -> None:
        loop = asyncio.get_running_loop()
        for x in listeners:
            if x.kind == "udp":
                self.readers.append(UDPReader(self.handler, x.sock, loop))
            elif x.kind == "tcp":
                server = await loop.create_server(self.tcp.protocol, sock=x.sock, backlog=1024)
                self.servers.append(server)
        for host, port in sorted({(x.host, x.port) for x in listeners}):
            log.info("listening on %s port %d (udp, tcp)", host, port)

    def http_socket(self) -> Listener | None:
        return next((x for x in self.listeners if x.kind == "http"), None)

    async def reload(self, reason: str) -> bool:
        """Build complete new zones, config and selector and swap them in, or keep the old."""
        async with self.reload_lock:
            self.service.reloading()  # [operator hook] sd_notify RELOADING=1
            loop = asyncio.get_running_loop()
            try:
                config = await loop.run_in_executor(None, self._load_config)
                files = await loop.run_in_executor(None, self.loader.load)
                problems = cross_check(files, config)
                if self.file_store.zones and not files.zones:
                    problems.append(f"{self.opts.zones_dir}:0: no zone files left: refusing a "
                                    f"reload that would drop all {len(self.file_store.zones)} "
                                    "zones (every answer would be REFUSED)")
                if problems:
                    raise ZoneFileError(problems)
                runtime = await loop.run_in_executor(None, self._new_runtime, config)
                # xfr hook (after the last await): add the secondary zones the new config
                # keeps, so no transfer installed meanwhile is lost.
                store = self.xfr.merge(files, config)
                problems = cross_check(store, config)
                if problems:
                    raise ZoneFileError(problems)
            except Problems as exc:  # zones, config or GeoIP database, all located
                return self._reload_failed(reason, exc.problems)
            except Exception as exc:  # the last line of defence: never lose the old state
                return self._reload_failed(reason, [f"{type(exc).__name__}: {exc}"])
            self._adopt(runtime, files, store)
            self.last_reload_error = []
            self.backend.on_reloaded(True, reason)  # [operator hook] logs the reload event
            self.service.reloaded(True, f"serving {len(self.store.zones)} zones")
            return True

    def _sighup(self) -> None:
        reopen_logs()  # [refactor hook] logrotate's postrotate may send SIGHUP too
        asyncio.get_running_loop().create_task(self.reload("SIGHUP"))

    def _adopt(self, runtime: Runtime, files: ZoneStore, store: ZoneStore) -> None:
        """Serve a checked runtime (config and what is compiled from it) and these zones
        from now on."""
        config = runtime.config
        if config.server != self.config.server:
            log.warning("reload: [server] settings (listeners, sizes, control API) changed; "
                        "they take effect at the next restart")
        if self.xfr.update_config(config):  # xfr hook: secondary zones added/removed
            store = self.xfr.fitted_store(files, lambda s: cross_check(s, config))
        self._install(self.make_generation(runtime, files, store))
        self.xfr.loaded(store)
        self.handler.guard = Defences.build(config, self.metrics, self.handler.guard)
        self.monitor.update_config(config)
        self.steering.update_config(config, runtime.selector)  # [traffic hook]

    def _reload_failed(self, reason: str, problems: list[str]) -> bool:
        self.last_reload_error = problems
        for problem in problems:
            log.error("%s", problem)
        self.backend.on_reloaded(False, reason, problems)  # [operator hook] logs the reload
        self.service.reloaded(False, f"serving {len(self.store.zones)} zones")
        return False

    def _watched(self) -> list[str]:
        """Every file whose change reloads: zones (and their $INCLUDEs), the config, the
        GeoIP and ASN databases; asked at each poll (files come and go)."""
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
        extra |= self.steering.watched_files()  # [traffic hook] the ASN database
        # file_store: secondary zone copies are written by us, not watched (xfr hook)
        return sorted(set(paths) | self.file_store.files() | extra | {self.opts.zones_dir})

    async def watch(self) -> None:
        """Reload when watched files changed (geodns.watch.FileWatcher: poll, settle)."""
        await self.watcher.run(self.stopping)

    async def _files_changed(self) -> None:
        await self.reload("files changed")

    async def run(self) -> None:
        await self.start()
        self.service.bound()  # [operator hook] --user: drop root now that DNS is bound
        await self.started()
        self.xfr.loaded(self.store)  # xfr hook: journal the zones, refresh secondaries
        self.xfr.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        # [refactor hook] logrotate: SIGUSR1 (and SIGHUP) reopen the query log
        loop.add_signal_handler(signal.SIGUSR1, reopen_logs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGUSR2,
                                lambda: loop.create_task(self.spawn_successor()))
        watcher = loop.create_task(self.watch())
        await self.monitor.start()
        await self.steering.start()  # [traffic hook] polls load feeds, watches maps
        if self.qlog is not None:
            await self.qlog.start()
            log.info("query log: %s (sample %s)", self.qlog.path, self.qlog.sample_rate)
        if self.dnstap is not None:  # [operator hook]
            await self.dnstap.start()
        http = self.http_socket()
        if http is not None:
            self.control = await start_control(self.backend, http.host, http.port,
                                               self.opts.http_token, sock=http.sock)
        await self._hand_over()
        log.info("geodns ready: %d zones", len(self.store.zones))
        self.service.ready(f"serving {len(self.store.zones)} zones")  # [operator hook]
        await self.stopping.wait()
        self.service.stopping()  # [operator hook] sd_notify STOPPING=1
        watcher.cancel()
        await self.xfr.stop()
        await self.monitor.stop()
        await self.steering.stop()  # [traffic hook]
        if self.control is not None:
            await stop_control(self.control)
        await self.close()
        # after the listeners (or the workers) stopped: the last answers are logged too
        if self.qlog is not None:
            await self.qlog.stop()
        if self.dnstap is not None:  # [operator hook]
            await self.dnstap.stop()

    def _query_log(self, kind: type[QueryLog], config: Config) -> QueryLog | None:
        """The query log (a worker's ships its lines to the supervisor's)."""
        ql = config.querylog
        return kind(ql.path, sample=ql.sample, max_bytes=ql.max_bytes, keep=ql.keep,
                    queue_size=ql.queue, metrics=self.metrics) if ql.path else None

    def _dnstap(self, kind: type[Dnstap]) -> Dnstap | None:
        """dnstap output (a worker's ships its messages to the supervisor's)."""
        if not self.config.dnstap.enabled:
            return None
        return kind(self.config.dnstap, self.metrics, f"geodns {version()}")

    async def started(self) -> None:
        """Sockets bound and privileges dropped (the supervisor starts workers here)."""

    async def _hand_over(self) -> None:
        """Answer ``--replace`` from now on; tell the server we replaced to go."""
        dns = [x for x in self.listeners if x.kind != "http"]
        if not dns:
            return
        first = dns[0]
        path = takeover_path([(first.host, first.port)] if self.opts.listen[0][1] == 0
                             else self.opts.listen)
        self.takeover = TakeoverPoint(path, lambda: list(self.listeners), self._replaced)
        await self.takeover.start()
        if self.successor is not None:
            self.successor.ready()
            self.successor = None

    async def spawn_successor(self) -> None:
        """SIGUSR2: start a new server with our command line plus ``--replace`` (new
        code, new config); it takes our sockets and we drain.  Under systemd the new
        process names itself the main one (sd_notify MAINPID)."""
        if self.takeover is None or self.replaced:
            log.warning("SIGUSR2: no takeover socket here; not replacing this server")
            return
        argv = [sys.executable, "-m", "geodns", *successor_args(sys.argv[1:])]
        log.info("SIGUSR2: starting a replacement: %s", " ".join(argv))
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
        code = await proc.wait()
        if not self.replaced:
            log.error("the replacement (pid %d) exited with %s before it served; still "
                      "serving", proc.pid, code)

    def _replaced(self) -> None:
        log.info("a new server answers on our sockets: draining and exiting")
        self.replaced = True
        self.stopping.set()

    async def close(self) -> None:
        if self.takeover is not None:
            self.takeover.close()
        for r in self.readers:
            r.close()
        for s in self.servers:
            s.close()
        if self.replaced:  # the successor reads the same sockets: finish what is open
            await self.tcp.drain(DRAIN_SECONDS)
        self.tcp.close_all()
        for s in self.servers:
            await s.wait_closed()
        for x in self.listeners:
            x.sock.close()
        log.info("geodns stopped")
