"""A worker process: answers DNS on its share of the sockets, nothing else.

It serves what the supervisor sends: zone stores (already checked), the config
(it compiles its own steering maps from it), health snapshots, spill shares and
the expiry of secondary zones.  It reads no zone file, probes nothing and runs no
control API.  Zone transfers and NOTIFYs that reach it are answered by the
supervisor, which owns the journals and the secondary zones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rcode

from geodns.config import Config
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.backend import ServerBackend
from geodns.ops.dnstap import Dnstap
from geodns.ops.querylog import QueryLog
from geodns.problems import Problems
from geodns.server import ServeOptions, Server
from geodns.workers.channel import Channel
from geodns.workers.shipping import Part, unpack
from geodns.workers.sockets import Listener
from geodns.workers.stats import export
from geodns.workers.telemetry import ShippedDnstap, ShippedQueryLog, Shipper
from geodns.xfr import tsig
from geodns.xfr.opcode import answer_opcode
from geodns.xfr.outbound import is_transfer
from geodns.xfr.secondary import Secondary
from geodns.zones.store import ZoneStore

log = logging.getLogger("geodns.workers")

STATS_EVERY: Final = 1.0  # seconds between counter reports
MIX_EVERY: Final = 5.0  # seconds between answer-mix reports (when sampled)
TRANSFER_TIMEOUT: Final = 900.0


class WorkerXfr:
    """The zone-transfer hooks of a worker: TSIG on queries is checked here; AXFR,
    IXFR and accepted NOTIFYs go to the supervisor."""

    def __init__(self, config: Config, channel: Channel,
                 answer: Callable[[bytes, str, bool], bytes | None]) -> None:
        self.channel = channel
        self.answer = answer  # the handler, for a "transfer" the supervisor declines
        self.expires: dict[dns.name.Name, float] = {}  # secondary zone -> expiry (epoch)
        self.keys: tsig.Keyring = {}
        self.secondary = Secondary(Path("."), lambda zones: [], None)
        self.secondary.copies = False
        self.update_config(config)

    def update_config(self, config: Config) -> bool:
        self.keys = tsig.keyring(config.tsig)
        self.secondary.configure(config.secondary, self.keys)
        return False  # the supervisor decides which secondary zones are served

    def fitted_store(self, files: ZoneStore, check: Any) -> ZoneStore:
        return files

    def loaded(self, store: ZoneStore) -> None:
        pass

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def tcp_transfer(self, wire: bytes, peer: str) -> asyncio.Future[list[bytes]] | None:
        if not is_transfer(wire):
            return None
        return asyncio.ensure_future(self._transfer(wire, peer))

    async def _transfer(self, wire: bytes, peer: str) -> list[bytes]:
        many = await self.channel.request("xfr", wire, peer, timeout=TRANSFER_TIMEOUT)
        if many is None:  # not a transfer after all: an ordinary answer
            resp = self.answer(wire, peer, True)
            return [resp] if resp is not None else []
        return list(many)

    def other_opcode(self, wire: bytes, peer: str, tcp: bool) -> bytes:
        notify = self.secondary.notify if self.secondary.zones else None
        resp = answer_opcode(wire, peer, notify)
        opcode = (wire[2] >> 3) & 0x0F
        if opcode == dns.opcode.NOTIFY and len(resp) > 3 and resp[3] & 0x0F == 0:
            try:  # accepted (from a primary, signed as required): the supervisor refreshes
                origin = dns.message.from_wire(wire, keyring=False).question[0].name
            except (dns.exception.DNSException, IndexError):
                return resp
            self.channel.send("notify", origin.to_text(), peer)
        return resp

    def signed_query(self, wire: bytes, peer: str, tcp: bool,
                     answer: Callable[[bytes], bytes]) -> bytes | None:
        return tsig.answer_signed(wire, peer, tcp, self.keys, answer)

    def expire_remaining(self, origin: dns.name.Name) -> int | None:
        at = self.expires.get(origin)
        return None if at is None else max(0, int(at - time.time()))


class QuietBackend(ServerBackend):
    """A worker logs no reload or health events: the supervisor logs them once."""

    def on_reloaded(self, ok: bool = True, reason: str | None = None,
                    problems: Sequence[str] = ()) -> None:
        pass

    def on_health(self, snapshot: HealthSnapshot) -> None:
        pass


class WorkerServer(Server):
    """A :class:`~geodns.server.Server` fed by the supervisor instead of files."""

    def __init__(self, opts: ServeOptions, store: ZoneStore, config: Config,
                 channel: Channel, index: int, listeners: list[Listener],
                 generation: int) -> None:
        self.channel = channel
        super().__init__(opts, store, config)
        self.monitor.on_change = None  # snapshots come from the supervisor
        self.index = index
        self.listeners = listeners
        self.generation = generation
        self.lock = asyncio.Lock()
        self.xfr_hooks().expires = {}

    def xfr_hooks(self) -> WorkerXfr:
        assert isinstance(self.xfr, WorkerXfr)
        return self.xfr

    def _xfr_service(self, config: Config) -> Any:
        return WorkerXfr(config, self.channel, lambda w, p, t: self.handler.handle(w, p, t))

    def _first_store(self, files: ZoneStore, config: Config) -> ZoneStore:
        return files

    def _query_log(self, kind: type[QueryLog], config: Config) -> QueryLog | None:
        return super()._query_log(ShippedQueryLog, config)

    def _dnstap(self, kind: type[Dnstap]) -> Dnstap | None:
        return super()._dnstap(ShippedDnstap)

    def _make_backend(self) -> ServerBackend:
        return QuietBackend(self, self.metrics, self.monitor, steering=self.steering)

    def _health_changed(self, snapshot: HealthSnapshot) -> None:
        self.health.snapshot = snapshot
        self.handler.health_changed()

    # ------------------------------------------------------------ messages

    def on_message(self, message: tuple[Any, ...]) -> Any:
        kind = message[0]
        if kind == "health":
            snapshot, sent = message[1], message[2]
            self._health_changed(snapshot)
            self.channel.send("health_applied", snapshot.generation, time.monotonic() - sent)
        elif kind == "spill":
            self.steering.spill.state = message[1]
            self.handler.health_changed()  # cached steered answers are re-chosen
        elif kind == "expires":
            self.xfr_hooks().expires = message[1]
        elif kind == "state":
            return self.apply(*message[1:])
        elif kind == "stats":
            self.channel.reply(message[1], self.stats())
        elif kind == "stop":
            self.replaced = bool(message[1])
            self.stopping.set()
        return None

    async def apply(self, generation: int, parts: list[Part], config: Config | None,
                    expires: dict[dns.name.Name, float]) -> None:
        """Serve a new generation: zones (and config) checked by the supervisor."""
        async with self.lock:
            try:
                store = await unpack(parts, self.store.zones)
                runtime = self.runtime
                if config is not None:
                    loop = asyncio.get_running_loop()
                    runtime = await loop.run_in_executor(None, self._new_runtime, config)
                self.xfr_hooks().expires = expires
                self._adopt(runtime, store, store)
            except Problems as exc:
                self.channel.send("applied", generation, False, exc.problems)
                return
            except Exception as exc:  # keep serving the generation we have
                log.exception("generation %d not applied", generation)
                self.channel.send("applied", generation, False,
                                  [f"{type(exc).__name__}: {exc}"])
                return
            self.generation = generation
            self.channel.send("applied", generation, True, [])

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"metrics": export(self.metrics), "generation": self.generation,
                "health": self.health.snapshot.generation,
                "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024}

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        await self.serve_on(self.listeners)
        await self.steering.start(leader=False)
        if self.qlog is not None:
            await self.qlog.start()
        if self.dnstap is not None:
            await self.dnstap.start()
        shipper = Shipper(self.qlog, self.dnstap,
                          lambda lines, taps: self.channel.send("telemetry", lines, taps))
        shipper.start()
        reporter = loop.create_task(self._report())
        self.channel.send("ready", os.getpid(), self.generation)
        gone = loop.create_task(self.channel.closed.wait())
        stop = loop.create_task(self.stopping.wait())
        await asyncio.wait([gone, stop], return_when=asyncio.FIRST_COMPLETED)
        if gone.done() and not stop.done():
            log.warning("the supervisor went away; stopping")
        reporter.cancel()
        for task in (gone, stop):
            task.cancel()
        await self.steering.stop()
        await self.close()
        if self.qlog is not None:
            await self.qlog.stop()
        if self.dnstap is not None:
            await self.dnstap.stop()
        await shipper.stop()
        try:
            self.channel.send("stats", self.stats())
            await self.channel.drain()
        except ConnectionError:
            pass
        await self.channel.close()

    async def _report(self) -> None:
        next_mix = time.monotonic() + MIX_EVERY
        while True:
            await asyncio.sleep(STATS_EVERY)
            self.channel.send("stats", self.stats())
            if self.handler.mix is not None and time.monotonic() >= next_mix:
                next_mix = time.monotonic() + MIX_EVERY
                self.channel.send("mix", *self.steering.mix.entries())


async def serve(sock: socket.socket, index: int) -> int:
    """The worker process: wait for the supervisor's init, then serve until told."""
    loop = asyncio.get_running_loop()
    init: asyncio.Future[dict[str, Any]] = loop.create_future()
    early: list[tuple[Any, ...]] = []
    worker: WorkerServer | None = None

    def on_message(message: tuple[Any, ...]) -> Any:
        if message[0] == "init":
            if not init.done():
                init.set_result(message[1])
            return None
        if worker is None:
            early.append(message)
            return None
        return worker.on_message(message)

    channel = Channel(sock, on_message, "supervisor")
    await channel.start()
    closed = loop.create_task(channel.closed.wait())
    waiting: list[asyncio.Future[Any]] = [init, closed]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not init.done():
        return 1
    closed.cancel()
    data = init.result()
    store = await unpack(data["parts"], {})
    listeners = [Listener(kind, host, port, socket.socket(fileno=fd))
                 for kind, host, port, fd in data["listeners"]]
    opts: ServeOptions = data["opts"]
    try:
        worker = WorkerServer(opts, store, data["config"], channel, index, listeners,
                              data["generation"])
    except Problems as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 1
    worker.xfr_hooks().expires = data["expires"]
    worker._health_changed(data["health"])
    if data["spill"] is not None:
        worker.steering.spill.state = data["spill"]
    for message in early:
        result = worker.on_message(message)
        if result is not None:
            await result
    await worker.run()
    return 0


def ignore_interrupts() -> None:
    """Ctrl-C in a terminal reaches every process of the group: the supervisor alone
    decides when workers stop (and SIGHUP is the supervisor's too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # [refactor hook] `systemctl kill -s USR1|USR2 geodns` signals every process of the
    # unit: both are the supervisor's (USR1: reopen the node's query log, which it
    # writes; USR2: start a replacement); neither may end a child.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
