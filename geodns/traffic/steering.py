"""Data-driven steering inside a running server: one object the server holds.

It owns what lives longer than one config: the load monitor and the spill
controller (loads -> the shares spill pools shed, published to the selector), the
latency books (each latency pool's last good map, kept current by a watcher that
re-reads a changed file and recompiles that pool only, both off the serving thread),
the recent answer mix, and the guards that judge operator overrides.

The server wires it in a few places (each marked ``[traffic hook]``):

* selectors are built with :meth:`Steering.inputs` (ASN networks, latency books, the
  spill holder) and adopted after a reload with :meth:`Steering.update_config`;
* the handler hands 1 in N steered answers to ``steering.mix.take``;
* :meth:`start` / :meth:`stop` with the server; ``on_answers_changed`` (flush the
  packet caches) is called whenever spill shares or a latency map change answers;
* the health monitor's overrides consult :meth:`guard` before an override applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from geodns.config import Config
from geodns.health.override_rules import OverrideRule, resolve
from geodns.health.snapshot import HealthKey, HealthSnapshot, State
from geodns.logs import event
from geodns.ops.simulate import Client, SimResult, judge, simulate
from geodns.select.inputs import Inputs, load_asn, load_books, needs_asn
from geodns.select.latency import LatencyBook
from geodns.select.selector import Selector
from geodns.select.spill import SpillHolder
from geodns.tasks import cancel
from geodns.traffic.feeds import LoadMonitor
from geodns.traffic.guards import GuardVerdict
from geodns.traffic.latency_map import LatencyMapFile
from geodns.traffic.loads import LoadSnapshot
from geodns.traffic.mix import MixSampler
from geodns.traffic.spill import SpillController

__all__ = ["Steering"]

log = logging.getLogger("geodns.steering")

WATCH_INTERVAL: Final = 1.0  # latency map files and spill decay, seconds


class Steering:
    """Loads, spill, latency maps, the answer mix and guards for one server."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.spill = SpillHolder()
        self.controller = SpillController(config, self.spill)
        self.loads = LoadMonitor(config, on_change=self._loads_changed)
        self.books: dict[str, LatencyBook] = {}
        self._files: dict[str, LatencyMapFile] = {}
        self.mix = MixSampler()
        # set by the server
        self.on_answers_changed: Callable[[], None] = lambda: None
        self.selector_of: Callable[[], Selector | None] = lambda: None
        self.health_of: Callable[[], HealthSnapshot] = HealthSnapshot.all_up
        # guards: refusals and break-glass overrides, by guard
        self.refused: dict[str, int] = {}
        self.forced: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._handler: Any = None
        self._control = True
        self.leader = True

    # ------------------------------------------------------------------ lifecycle

    def inputs(self, config: Config) -> Inputs:
        """What a new selector for ``config`` reads (Problems for unusable files; the
        books of unchanged map files are the live ones, whatever their file holds now)."""
        return Inputs(load_asn(config), load_books(config, self.books), self.spill)

    def update_config(self, config: Config, selector: Selector | None = None) -> None:
        """A new config (and its selector) is being served."""
        if config is not self.config:
            self.config = config
            self.loads.update_config(config)
            self.controller.update_config(config)
            self._sample()
        if selector is not None:
            self.books = dict(selector.inputs.latency)
            for name, book in self.books.items():
                f = self._files.get(name)
                if f is None or str(f.path) != book.path:
                    f = self._files[name] = LatencyMapFile(book.path, frozenset(config.pops))
                    if book.map is not None:
                        f.prime(book.map)
                f.pops = frozenset(config.pops)
            self._files = {n: f for n, f in self._files.items() if n in self.books}
            for name, plan in selector.plans.items():
                if plan.latency is not None and plan.latency_stale:
                    log.warning("latency map %s is missing or older than max_age %gs: pool "
                                "%s answers by its fallback (%s)", plan.latency.path,
                                plan.pool.max_age, name, plan.kind)

    def attach(self, handler: Any, monitor: Any, metrics: Any,
               runtime: Callable[[], Any], control: bool = True) -> None:
        """Wire into a server: the handler's mix hook and packet-cache flush, the
        overrides' guard, the metrics registry, and where the live selector and
        health snapshot are (``runtime()`` is the server's current Runtime; the
        snapshot is the one the handler answers with).
        ``control``: the control API runs (dry runs and ``simulate --from`` read the
        mix); without it the mix is sampled only while some pool has guards."""
        self.selector_of = lambda: runtime().selector
        self.health_of = lambda: handler.health.snapshot
        self.on_answers_changed = handler.health_changed
        self._handler, self._control = handler, control
        monitor.overrides.guard = self.guard
        metrics.registry.register(self.collector())
        self.update_config(runtime().config, runtime().selector)
        self._sample()

    def _sample(self) -> None:
        """Sample the answer mix only when something reads it."""
        if self._handler is not None:
            wanted = self._control or any(
                p.min_up is not None or p.max_share is not None
                for p in self.config.pools.values())
            self._handler.mix = self.mix.take if wanted else None

    def watched_files(self) -> set[str]:
        """Files whose change should reload the config: the ASN database (latency
        maps are watched here and reloaded without a config reload)."""
        path = needs_asn(self.config)
        return {str(path)} if path is not None else set()

    async def start(self, leader: bool = True) -> None:
        """``leader``: poll the load feeds and run the spill controller here (a worker
        process only watches its latency maps; the supervisor sends it spill shares)."""
        self.leader = leader
        if leader:
            await self.loads.start()
        self._task = asyncio.get_running_loop().create_task(self._watch(),
                                                            name="geodns-steering")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self.loads.stop()

    # ------------------------------------------------------------------ loads, spill

    def _loads_changed(self, snapshot: LoadSnapshot) -> None:
        self.controller.observe(snapshot)
        self._publish_spill()

    def _publish_spill(self) -> None:
        if self.controller.publish():
            self.on_answers_changed()

    # ------------------------------------------------------------------ latency maps

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh_latency()
                if self.leader and self.controller.tick():
                    self._publish_spill()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep watching whatever one file does
                log.exception("steering: watcher error; still watching")
            await asyncio.sleep(WATCH_INTERVAL)

    async def refresh_latency(self) -> None:
        """Re-read changed map files; recompile every latency pool whose map changed
        (off the serving thread), switch pools whose map went stale or fresh."""
        loop = asyncio.get_running_loop()
        for name, f in list(self._files.items()):
            book = self.books.get(name)
            if book is None:
                continue
            before = list(f.problems)
            if await loop.run_in_executor(None, f.refresh):
                assert f.current is not None
                book.map, book.problems = f.current, []
                log.info("latency map %s: reloaded, %d prefixes (pool %s)", book.path,
                         len(f.current), name)
            elif f.problems and f.problems != before:
                book.problems = list(f.problems)
                for problem in f.problems:
                    log.error("%s", problem)
                log.error("latency map %s rejected (%d problem%s); pool %s keeps the map it "
                          "had", book.path, len(f.problems), "" if len(f.problems) == 1
                          else "s", name)
        selector = self.selector_of()
        if selector is None:
            return
        now = self.clock()
        for name, plan in selector.plans.items():
            book = plan.latency
            if book is None:
                continue
            was = plan.latency_stale
            stale = book.stale(plan.pool.max_age, now)
            if plan.compiled_from is not book.map:
                t0 = time.perf_counter()
                maps, choices, incumbents = await loop.run_in_executor(
                    None, plan.compile_latency, book)
                if self.selector_of() is not selector:
                    return  # a reload replaced the selector meanwhile: its turn next tick
                book.incumbents = incumbents
                plan.install_latency(maps, choices, stale, book.map)
                log.info("latency pool %s: map compiled in %.0f ms", name,
                         (time.perf_counter() - t0) * 1000)
            elif stale != was:
                plan.set_stale(stale)
            else:
                continue
            if stale and not was:
                log.warning("latency map %s is older than max_age %gs: pool %s answers by "
                            "its fallback (%s)", book.path, plan.pool.max_age, name, plan.kind)
            elif was and not stale:
                log.info("latency map %s is fresh: pool %s answers by it", book.path, name)
            self.on_answers_changed()

    # ------------------------------------------------------------------ guards

    def health_with(self, rules: list[OverrideRule]) -> HealthSnapshot:
        """The live checked states under these override rules."""
        live = self.health_of()
        forced: dict[HealthKey, State] = resolve(rules, self.config.pops, self.clock())
        return HealthSnapshot.build(real=live.real, overrides=forced,
                                    generation=live.generation + 1_000_000)

    def predict(self, new: list[OverrideRule], text: str = "") -> SimResult:
        """What the override rules ``new`` (instead of the current ones) would do to the
        recent mix, with the guards' verdict."""
        selector = self.selector_of()
        entries, _ = self.mix.entries()
        clients = [Client(e.client, e.prefix, e.qps, e.pool, e.qtype) for e in entries]
        now, then = self.health_of(), self.health_with(new)
        if selector is None:  # no pools: nothing to predict
            selector = Selector(self.config, None, inputs=Inputs())
        result = simulate(self.config, selector, clients, scenario=then, now=now,
                          scenario_text=text or "the change", loads=self._fresh_loads())
        judge(self.config, result, guarded_only=True)
        return result

    def guard(self, new: list[OverrideRule], force: bool) -> GuardVerdict:
        """The guards' verdict on replacing the override rules by ``new``; refusals and
        forced breaches are logged and counted here."""
        result = self.predict(new)
        verdict = judge(self.config, result, force=force, guarded_only=True)
        for v in verdict.violations:
            self.refused[v.guard] = self.refused.get(v.guard, 0) + 1
            log.warning("guard refused an override: %s", v.message,
                        extra=event("guard", action="refused", guard=v.guard, pool=v.pool,
                                    pop=v.pop, message=v.message))
        for v in verdict.forced:
            self.forced[v.guard] = self.forced.get(v.guard, 0) + 1
            log.warning("guard broken by a forced override (break glass): %s", v.message,
                        extra=event("guard", action="forced", guard=v.guard, pool=v.pool,
                                    pop=v.pop, message=v.message))
        return verdict

    def _fresh_loads(self) -> dict[str, float]:
        snap = self.loads.snapshot
        return {p: v for p in self.config.pops if (v := snap.load(p)) is not None}

    # ------------------------------------------------------------------ reporting

    def collector(self) -> Collector:
        """Prometheus families for loads, spill, latency maps and guards."""
        return _SteeringMetrics(self)


class _SteeringMetrics(Collector):
    def __init__(self, steering: Steering) -> None:
        self.s = steering
        self.loads = steering.loads.metrics()

    def collect(self) -> Any:
        yield from self.loads.collect()
        s = self.s
        share = GaugeMetricFamily("geodns_spill_share", "Share of a POP's client blocks its "
                                  "spill pool sends elsewhere (0..1)", labels=["pool", "pop"])
        for pool, shares in sorted(s.spill.state.shares.items()):
            for pop, value in sorted(shares.items()):
                share.add_metric([pool, pop], value)
        yield share
        util = GaugeMetricFamily("geodns_pop_utilisation", "Fresh load / capacity of the POP",
                                 labels=["pop"])
        for name in sorted(s.config.pops):
            ratio = s.loads.snapshot.utilisation(name)
            if ratio is not None:
                util.add_metric([name], ratio)
        yield util
        age = GaugeMetricFamily("geodns_latency_map_age_seconds", "Age of the latency map a "
                                "pool uses", labels=["pool"])
        stale = GaugeMetricFamily("geodns_latency_map_stale", "1 while the pool's latency map "
                                  "is older than max_age (its fallback answers)",
                                  labels=["pool"])
        now = s.clock()
        selector = s.selector_of()
        for name, book in sorted(s.books.items()):
            if book.map is not None:
                age.add_metric([name], book.map.age(now) or 0.0)
            plan = selector.plans.get(name) if selector is not None else None
            if plan is not None:
                stale.add_metric([name], 1.0 if plan.latency_stale else 0.0)
        yield age
        yield stale
        refused = CounterMetricFamily("geodns_guard_refusals", "Overrides refused because "
                                      "they would break a guard or a capacity",
                                      labels=["guard"])
        forced = CounterMetricFamily("geodns_guard_forced", "Guards broken by forced "
                                     "(break-glass) overrides", labels=["guard"])
        for guard in ("min_up", "max_share", "capacity"):
            refused.add_metric([guard], s.refused.get(guard, 0))
            forced.add_metric([guard], s.forced.get(guard, 0))
        yield refused
        yield forced
