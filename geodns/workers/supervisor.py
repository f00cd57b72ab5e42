"""`geodns serve --workers N`: one supervisor, N DNS workers and one prober.

The supervisor is a :class:`~geodns.server.Server` that answers no DNS itself.  It
binds the sockets (N per endpoint, SO_REUSEPORT), reads and checks zones and
config, runs the health monitor (probes go to the prober process), the steering
inputs, zone transfers, the file watcher and the control API, and sends every new
generation of state to the workers.  Each worker answers on its own sockets; the
kernel spreads queries over them.  A child that exits is started again with the
current state; its sockets stayed open here, so queries that arrived meanwhile
are answered late rather than lost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import dns.name
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from geodns.config import Config
from geodns.generation import Generation
from geodns.health.monitor import HealthMonitor
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.status import NodeStatus, ProberStatus, WorkerStatus
from geodns.server import ServeOptions, Server
from geodns.traffic.mix import MixEntry, MixSampler
from geodns.workers import telemetry
from geodns.workers.channel import Channel, ChannelClosed
from geodns.workers.prober import RemoteProbe
from geodns.workers.shipping import Part, pack
from geodns.workers.sockets import Listener, slots
from geodns.workers.stats import NodeTotals
from geodns.zones.loader import ZoneLoader
from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.workers")

READY_TIMEOUT: Final = 600.0  # a cold start compiles the steering maps
STOP_TIMEOUT: Final = 10.0
FIRST_BACKOFF: Final = 0.5
STOP_GRACE: Final = 0.5  # a child ended by SIGTERM: time for ours to arrive too
MAX_BACKOFF: Final = 30.0
STEADY: Final = 60.0  # a child that ran this long restarts without delay
CATCH_UP: Final = 600.0  # seconds a reload waits for every worker to serve it
SWAP_NAMES: Final = 100_000  # a generation loading more names starts fresh workers
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def usable_cpus() -> int:
    """The CPUs this process may run on (cgroup/affinity aware, at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _ignore(message: tuple[Any, ...]) -> None:
    """The prober only replies; it sends nothing of its own."""


class Child:
    """One child process (``python -m geodns.workers ROLE``) and its channel."""

    def __init__(self, name: str, role: str, args: list[str], fds: list[int],
                 on_message: Callable[[tuple[Any, ...]], Any]) -> None:
        self.name = name
        self.role = role
        self.args = args
        self.fds = fds
        self.on_message = on_message
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.started = 0.0
        self.ready = asyncio.Event()  # it answers (a worker says so once it serves)
        self.generation = 0

    @property
    def ran(self) -> float:
        """Seconds since the process started (0 when it never did)."""
        return time.monotonic() - self.started if self.started else 0.0

    async def start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "geodns.workers", self.role, str(child.fileno()),
                *self.args, pass_fds=[child.fileno(), *self.fds],
                stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.started = time.monotonic()
        self.channel = Channel(parent, self.on_message, self.name)
        await self.channel.start()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def send(self, *message: Any) -> bool:
        if self.channel is None:
            return False
        try:
            self.channel.send(*message)
            return True
        except ChannelClosed:
            return False

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, *message: Any, timeout: float = STOP_TIMEOUT) -> None:
        """Ask it to stop (``message``), then kill it if it has not after ``timeout``."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if message:
            self.send(*message)
        try:
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        except TimeoutError:
            log.warning("%s (pid %d) did not stop in %g s; killing it", self.name,
                        self.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.channel is not None:
            await self.channel.close()


@dataclass
class Slot:
    """One worker: its sockets, and what the supervisor knows of its process."""

    index: int
    listeners: list[Listener]
    child: Child | None = None  # the process answering for this slot
    pending: Child | None = None  # its replacement, starting (a big generation)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0  # the state generation it serves
    failed: bool = False  # the last generation did not apply: send the next one whole
    problems: list[str] = field(default_factory=list)
    restarts: int = 0
    health: int = 0  # the health snapshot generation it serves
    health_lag: float | None = None  # seconds the last snapshot took to reach it
    cpu: float = 0.0  # CPU seconds of the current process
    cpu_retired: float = 0.0  # of its earlier processes
    rss: int = 0
    reported: float = 0.0  # monotonic time of the last stats report
    backoff: float = FIRST_BACKOFF
    mix: tuple[list[MixEntry], float] = ([], 0.0)

    @property
    def pid(self) -> int:
        """The pid of the slot's process (the last one, while it is restarted)."""
        return self.child.pid if self.child is not None else 0


def next_backoff(ran: float, backoff: float) -> float:
    """Seconds before starting a process that exited after ``ran`` seconds: at once
    (after FIRST_BACKOFF) if it had run steadily, else twice the last wait, at most
    MAX_BACKOFF: a crash loop slows down, a rare crash is repaired at once."""
    return FIRST_BACKOFF if ran > STEADY else min(MAX_BACKOFF, backoff * 2)


class NodeMix(MixSampler):
    """The answer mix of the node: every worker's recent mix, summed."""

    def __init__(self, slots: Callable[[], list[Slot]]) -> None:
        super().__init__()
        self._slots = slots

    def entries(self, minutes: int = 5) -> tuple[list[MixEntry], float]:
        totals: dict[tuple[str, int, str, int | None], float] = {}
        covered = 1.0
        for slot in self._slots():
            entries, seconds = slot.mix
            covered = max(covered, seconds)
            for e in entries:
                key = (e.pool, e.qtype, e.client, e.prefix)
                totals[key] = totals.get(key, 0.0) + e.qps
        out = [MixEntry(pool, qtype, client, prefix, qps)
               for (pool, qtype, client, prefix), qps in
               sorted(totals.items(), key=lambda kv: -kv[1])]
        return out, covered


class Supervisor(Server):
    """The node: sockets, state, health, control; answers through its workers."""

    def __init__(self, opts: ServeOptions, store: ZoneStore, config: Config | None = None,
                 loader: ZoneLoader | None = None) -> None:
        self.probe = RemoteProbe()
        self.slots: list[Slot] = []
        self.generation = 1
        self._shipped: dict[dns.name.Name, Zone] = {}  # zones of the last generation sent
        self._sent_runtime: object = None
        self._ship: asyncio.Queue[tuple[int, ZoneStore, Config | None]] | None = None
        self._spill_sent: object = None
        self._expires_sent: dict[dns.name.Name, float] = {}
        self.prober: Child | None = None
        self.lags = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._whole: tuple[int, list[Part]] | None = None  # this generation, packed whole
        self._stopping_children = False
        super().__init__(opts, store, config, loader)
        # One writer per node: workers ship their lines here (geodns.workers.telemetry);
        # this process's own counts are added to theirs, not overwritten by them.
        for output in (self.qlog, self.dnstap):
            if output is not None:
                output.metrics = None
        self.totals = NodeTotals(self.metrics, lambda: telemetry.totals(self.qlog, self.dnstap))
        self.steering.mix = NodeMix(lambda: self.slots)
        self._sent_runtime = self.runtime
        self._shipped = dict(self.store.zones)
        inner = self.steering.on_answers_changed

        def answers_changed() -> None:  # spill shares or latency maps changed
            inner()
            self._send_spill()

        self.steering.on_answers_changed = answers_changed
        self.metrics.registry.register(_WorkerCollector(self))

    def _health_monitor(self, config: Config) -> HealthMonitor:
        return HealthMonitor(config, on_change=self._health_changed, probe=self.probe)

    # ------------------------------------------------------------ start, stop

    async def start(self) -> None:
        self.listeners = self.acquire(self.opts.workers)
        for host, port in sorted({(x.host, x.port) for x in self.listeners
                                  if x.kind != "http"}):
            log.info("listening on %s port %d (udp, tcp) with %d workers", host, port,
                     self.opts.workers)

    async def started(self) -> None:
        """Privileges are dropped: start the prober and the workers, wait for them."""
        self._ship = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._shipper(), name="geodns-shipper"))
        self._tasks.append(loop.create_task(self._keep_prober(), name="geodns-prober"))
        for i, mine in enumerate(slots(self.listeners, self.opts.workers)):
            slot = Slot(i, mine)
            self.slots.append(slot)
            self._tasks.append(loop.create_task(self._first(slot), name=f"geodns-worker-{i}"))
        self._tasks.append(loop.create_task(self._ticker(), name="geodns-workers-tick"))
        started = time.monotonic()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await asyncio.gather(*(slot.ready.wait() for slot in self.slots))
        except TimeoutError:
            log.error("not every worker was ready after %g s; serving with those that are",
                      READY_TIMEOUT)
        log.info("%d workers ready in %.1f s", sum(s.ready.is_set() for s in self.slots),
                 time.monotonic() - started)

    async def close(self) -> None:
        """Stop the workers (they drain when we were replaced), the prober, then us."""
        self._stopping_children = True
        await asyncio.gather(*(child.stop("stop", self.replaced) for child in self._children()))
        if self.prober is not None:
            await self.prober.stop("stop", timeout=2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().close()

    # ------------------------------------------------------------ children

    def _child_args(self, index: int | None) -> list[str]:
        root = logging.getLogger()
        level = logging.getLevelName(root.level).lower()
        fmt = "json" if any(type(h.formatter).__name__ == "JsonFormatter"
                            for h in root.handlers) else "text"
        args = ["--log-level", level, "--log-format", fmt]
        return [*args, "--index", str(index)] if index is not None else args

    def _children(self) -> list[Child]:
        """Every worker process: the slots' and the replacements still starting."""
        return [c for s in self.slots for c in (s.child, s.pending) if c is not None]

    async def _spawn(self, slot: Slot) -> Child:
        """A worker process for ``slot``, given the current generation; watched."""
        child = Child(f"worker {slot.index}", "worker", self._child_args(slot.index),
                      [x.sock.fileno() for x in slot.listeners], _ignore)
        child.on_message = functools.partial(self._from_worker, slot, child)
        await child.start()
        child.send("init", await self._init(slot))
        task = asyncio.get_running_loop().create_task(self._watch(slot, child),
                                                      name=f"geodns-worker-{slot.index}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return child

    async def _first(self, slot: Slot) -> None:
        """Start the slot's worker; a failure is a crash like any other (restarted)."""
        try:
            slot.child = await self._spawn(slot)
        except Exception:
            log.exception("worker %d: could not start", slot.index)
            await self._restart(slot, None, 0.0)

    async def _watch(self, slot: Slot, child: Child) -> None:
        """When ``child`` exits: fold its counters in; start the slot's worker again
        unless it was replaced or the node is stopping."""
        code = await child.wait()
        if child.channel is not None:
            await child.channel.close()
        self.totals.retire(child.pid)
        slot.cpu_retired += slot.cpu if child is slot.child else 0.0
        if child is slot.pending:
            slot.pending = None
        if child is not slot.child or await self._node_stopping(code) \
                or child is not slot.child:  # (a swap may have replaced it meanwhile)
            return
        slot.cpu = 0.0
        slot.ready.clear()
        await self._restart(slot, code, child.ran)

    async def _node_stopping(self, code: int | None) -> bool:
        """Is the node stopping?  A child ended by SIGTERM most likely got it with us
        (``kill`` of the process group, ``pkill geodns``): our own handler gets a moment
        to say so before the exit is taken for a crash, logged and restarted."""
        stopping = self._stopping_children or self.stopping.is_set()
        if code == -signal.SIGTERM and not stopping:
            await asyncio.sleep(STOP_GRACE)
            stopping = self._stopping_children or self.stopping.is_set()
        return stopping

    async def _restart(self, slot: Slot, code: int | None, ran: float) -> None:
        slot.backoff = next_backoff(ran, slot.backoff)
        slot.restarts += 1
        log.error("worker %d (pid %d) exited with %s after %.0f s; starting it again in "
                  "%.1f s", slot.index, slot.pid, code, ran, slot.backoff)
        await asyncio.sleep(slot.backoff)
        if not self._stopping_children:
            await self._first(slot)

    async def _swap(self, slot: Slot) -> bool:
        """Start a new process for ``slot`` with the current generation; once it answers
        (on the same sockets), the old one drains and exits.  The old one answered all
        along: a big generation never stalls a worker that is serving."""
        try:
            new = await self._spawn(slot)
        except Exception:
            log.exception("worker %d: could not start its replacement", slot.index)
            return False
        slot.pending = new
        ready = asyncio.ensure_future(new.ready.wait())
        gone = asyncio.ensure_future(new.wait())
        await asyncio.wait([ready, gone], timeout=READY_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        gone.cancel()
        if not new.ready.is_set() or new.proc is None or new.proc.returncode is not None:
            log.error("worker %d: the replacement for generation %d did not start; the "
                      "worker keeps generation %d", slot.index, self.generation,
                      slot.generation)
            await new.stop("stop", False, timeout=2.0)
            slot.pending = None
            slot.failed = True
            slot.problems = ["its replacement process did not start (see the log)"]
            return False
        old, slot.child, slot.pending = slot.child, new, None
        slot.generation, slot.failed, slot.problems = new.generation, False, []
        slot.cpu_retired += slot.cpu
        slot.cpu = 0.0
        if old is not None:
            old.send("stop", True)
        return True

    async def _init(self, slot: Slot) -> dict[str, Any]:
        parts = await self._whole_parts()
        opts = ServeOptions(**{**self.opts.__dict__, "service": None, "replace": False,
                               "workers": 1})
        return {"opts": opts, "generation": self.generation, "parts": parts,
                "config": self.config, "health": self.health.snapshot,
                "spill": self.steering.spill.state, "expires": self._expires(),
                "listeners": [(x.kind, x.host, x.port, x.sock.fileno())
                              for x in slot.listeners]}

    async def _whole_parts(self) -> list[Part]:
        """The current store packed whole (for a new worker), once per generation."""
        generation = self.generation
        if self._whole is None or self._whole[0] != generation:
            loop = asyncio.get_running_loop()
            parts: list[Part] = await loop.run_in_executor(None, pack, self.store, {})
            if generation == self.generation:
                self._whole = (generation, parts)
            return parts
        return self._whole[1]

    async def _keep_prober(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping_children:
            child = Child("prober", "prober", self._child_args(None), [], _ignore)
            try:
                await child.start()
            except Exception:
                log.exception("prober: could not start")
                code = None
            else:
                self.prober = child
                self.probe.channel = child.channel
                code = await child.wait()
                self.probe.channel = None
            if await self._node_stopping(code):
                return
            ran = child.ran  # a prober that could not start ran 0 s: back off
            backoff = next_backoff(ran, backoff)
            log.error("prober (pid %d) exited with %s after %.0f s; workers keep the last "
                      "health snapshot; starting it again in %.1f s", child.pid, code, ran,
                      backoff)
            await asyncio.sleep(backoff)

    # ------------------------------------------------------------ messages from workers

    def _from_worker(self, slot: Slot, child: Child, message: tuple[Any, ...]) -> Any:
        kind = message[0]
        if kind == "stats":
            stats = message[1]
            self.totals.update(child.pid, stats["metrics"])
            if child is slot.child:
                slot.cpu, slot.rss = stats["cpu"], stats["rss"]
                slot.reported = time.monotonic()
        elif kind == "ready":
            child.generation = message[2]
            child.ready.set()
            log.info("worker %d (pid %d) serving generation %d", slot.index, child.pid,
                     child.generation)
            if child is slot.child:
                slot.generation = child.generation
                slot.ready.set()
        elif kind == "applied" and child is not slot.child:
            pass  # a replacement reports "ready" instead
        elif kind == "applied":
            generation, ok, problems = message[1:4]
            if ok:
                slot.generation, slot.failed, slot.problems = generation, False, []
            else:
                slot.failed, slot.problems = True, list(problems)
                for problem in problems:
                    log.error("worker %d: generation %d not applied: %s", slot.index,
                              generation, problem)
        elif kind == "telemetry":
            telemetry.receive(self.qlog, self.dnstap, message[1], message[2])
        elif kind == "health_applied":
            slot.health, slot.health_lag = message[1], message[2]
            self.lags[bisect.bisect_left(LAG_BUCKETS, message[2])] += 1
            self.lag_sum += message[2]
        elif kind == "mix":
            slot.mix = (message[1], message[2])
        elif kind == "notify":
            self._notified(message[1], message[2])
        elif kind == "xfr":
            return self._transfer(child, message[1], message[2], message[3])
        return None

    async def _transfer(self, child: Child, rid: int, wire: bytes, peer: str) -> None:
        loop = asyncio.get_running_loop()
        many = await loop.run_in_executor(None, self.xfr.tcp_transfer, wire, peer)
        if child.channel is not None:
            child.channel.reply(rid, many)

    def _notified(self, origin_text: str, peer: str) -> None:
        st = self.xfr.secondary.zones.get(dns.name.from_text(origin_text))
        if st is not None:
            log.info("NOTIFY for %s from %s (via a worker): refreshing", origin_text, peer)
            st.wake.set()

    # ------------------------------------------------------------ state to workers

    def _live(self) -> Iterator[Slot]:
        return (s for s in self.slots if s.child is not None and s.ready.is_set())

    def _health_changed(self, snapshot: HealthSnapshot) -> None:
        super()._health_changed(snapshot)
        now = time.monotonic()
        for child in self._children():
            child.send("health", snapshot, now)

    def _send_spill(self) -> None:
        state = self.steering.spill.state
        if state is self._spill_sent:
            return
        self._spill_sent = state
        for child in self._children():
            child.send("spill", state)

    def _expires(self) -> dict[dns.name.Name, float]:
        return {origin: st.expires_at for origin, st in self.xfr.secondary.zones.items()
                if st.expires_at is not None}

    def _install(self, generation: Generation) -> None:
        super()._install(generation)
        if self._ship is None:  # still starting: the workers' init carries it
            self._shipped = dict(generation.store.zones)
            self._sent_runtime = self.runtime
            return
        self.generation += 1
        # The config travels when a new runtime was built from it (config or GeoIP/ASN
        # file changed): only then do the workers compile their steering maps again.
        config = self.config if self.runtime is not self._sent_runtime else None
        self._sent_runtime = self.runtime
        self._ship.put_nowait((self.generation, generation.store, config))

    async def _shipper(self) -> None:
        """Send each new generation to every worker, in order (packing off the loop).

        A small one is applied in place.  A big one (over SWAP_NAMES names to load, or
        new steering maps to compile) starts fresh worker processes beside the serving
        ones instead, which take over once they answer: loading a million names or
        compiling maps in a serving process would delay its answers."""
        assert self._ship is not None
        loop = asyncio.get_running_loop()
        while True:
            generation, store, config = await self._ship.get()
            while not self._ship.empty():  # several reloads meanwhile: the newest counts
                generation, store, newer = self._ship.get_nowait()
                config = newer or config
            delta = await loop.run_in_executor(None, pack, store, self._shipped)
            names = sum(len(store.zones[origin].nodes) for origin, part
                        in zip(store.zones, delta, strict=True) if part[0] == "zone")
            self._shipped = dict(store.zones)
            if names > SWAP_NAMES or config is not None:
                why = f"{names} names to load" if names > SWAP_NAMES else "new steering maps"
                log.info("generation %d (%s): starting fresh workers beside the serving "
                         "ones", generation, why)
                step = max(1, len(self.slots) // 4)  # memory: a few extra processes at once
                for i in range(0, len(self.slots), step):
                    await asyncio.gather(*(self._swap(s) for s in self.slots[i:i + step]))
                continue
            expires = self._expires()
            whole: list[Part] | None = None
            for slot in self.slots:
                if slot.child is None:
                    continue
                parts = delta
                if slot.failed:
                    if whole is None:
                        whole = await loop.run_in_executor(None, pack, store, {})
                    parts = whole
                slot.child.send("state", generation, parts, self.config if slot.failed
                                else None, expires)
                if slot.pending is not None:
                    slot.pending.send("state", generation, delta, None, expires)

    async def _ticker(self) -> None:
        """Secondary zone expiry times, when a refresh moved them."""
        while True:
            await asyncio.sleep(1.0)
            expires = self._expires()
            if expires != self._expires_sent:
                self._expires_sent = expires
                for child in self._children():
                    child.send("expires", expires)

    # ------------------------------------------------------------ reload

    async def reload(self, reason: str) -> bool:
        """Check and adopt here; then every worker serves the new generation."""
        ok = await super().reload(reason)
        if not ok or not self.slots:
            return ok
        return await self.caught_up(self.generation)

    async def caught_up(self, generation: int, timeout: float = CATCH_UP) -> bool:
        """True once every running worker serves ``generation``; False (with the
        problems in ``last_reload_error``) when one could not apply it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            behind = [s for s in self._live() if s.generation < generation and not s.failed]
            if not behind:
                break
            await asyncio.sleep(0.02)
        failed = [s for s in self._live() if s.failed or s.generation < generation]
        if not failed:
            return True
        self.last_reload_error = [f"worker {s.index}: {p}" for s in failed
                                  for p in s.problems or ["did not apply it in time"]]
        return False

    async def refresh_stats(self, timeout: float = 0.5) -> None:
        """Ask every worker for its counters now (a scrape sees this second's)."""
        async def ask(slot: Slot) -> None:
            channel = slot.child.channel if slot.child is not None else None
            if channel is None:
                return
            with contextlib.suppress(Exception):
                stats = await channel.request("stats", timeout=timeout)
                self.totals.update(slot.pid, stats["metrics"])
                slot.cpu, slot.rss = stats["cpu"], stats["rss"]

        await asyncio.gather(*(ask(s) for s in self._live()))

    # [refactor hook] typed: the one /status schema is geodns/ops/status.py
    def node_status(self) -> NodeStatus:
        """/status: which generation each worker serves, and how it is doing."""
        now = time.monotonic()
        return NodeStatus(
            generation=self.generation,
            health_generation=self.health.snapshot.generation,
            prober=ProberStatus(self.prober.pid if self.prober is not None else None,
                                self.probe.channel is not None
                                and not self.probe.channel.closed.is_set()),
            workers=tuple(WorkerStatus(
                index=s.index, pid=s.pid, ready=s.ready.is_set(),
                generation=s.generation, current=s.generation == self.generation,
                problems=tuple(s.problems), restarts=s.restarts,
                health_generation=s.health,
                health_lag_ms=round(s.health_lag * 1000, 2)
                if s.health_lag is not None else None,
                queries=self.totals.queries_of(s.pid),
                cpu_seconds=round(s.cpu_retired + s.cpu, 3), rss_bytes=s.rss,
                uptime_seconds=round(now - s.child.started, 1)
                if s.child is not None else None,
                sockets=len(s.listeners),
            ) for s in self.slots),
        )


class _WorkerCollector(Collector):
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        sup = self.sup
        ready = GaugeMetricFamily("geodns_workers", "Worker processes, by state.",
                                  labels=("state",))
        up = sum(s.ready.is_set() for s in sup.slots)
        ready.add_metric(("ready",), up)
        ready.add_metric(("starting",), len(sup.slots) - up)
        yield ready
        restarts = CounterMetricFamily("geodns_worker_restarts", "Worker processes started "
                                       "again after exiting.", labels=("worker",))
        cpu = CounterMetricFamily("geodns_worker_cpu_seconds", "CPU time of each worker "
                                  "(user + system), all its processes.", labels=("worker",))
        queries = CounterMetricFamily("geodns_worker_queries", "Responses sent by each "
                                      "worker's current process.", labels=("worker",))
        gen = GaugeMetricFamily("geodns_worker_generation", "The state generation each "
                                "worker serves (geodns_generation: the newest).",
                                labels=("worker",))
        for s in sup.slots:
            label = (str(s.index),)
            restarts.add_metric(label, s.restarts)
            cpu.add_metric(label, s.cpu_retired + s.cpu)
            queries.add_metric(label, sup.totals.queries_of(s.pid))
            gen.add_metric(label, s.generation)
        yield from (restarts, cpu, queries, gen)
        yield GaugeMetricFamily("geodns_generation", "The newest state generation (zones "
                                "and config) the supervisor has sent.", value=sup.generation)
        buckets, acc = [], 0
        for bound, n in zip((*map(str, LAG_BUCKETS), "+Inf"), sup.lags, strict=True):
            acc += n
            buckets.append((bound, acc))
        hist = HistogramMetricFamily("geodns_health_propagation_seconds", "From a new health "
                                     "snapshot (probe result or override) to a worker "
                                     "serving it.", buckets=buckets, sum_value=sup.lag_sum)
        yield hist
