"""The spill controller: from POP loads to the share of client blocks each POP sheds.

For every pool with ``spill = true`` and every POP of it, one number, the share of
the POP's client blocks (of that pool) that go elsewhere.  It moves only when a new
load measurement arrives (a feed publishes a value with a new timestamp), by half the
relative excess over the target ``spill_at`` x capacity::

    share += clamp(GAIN * (load - target) / max(load, target), -spill_step, +spill_step)

so a POP 10 % over its target sheds about 5 % more of its blocks per measurement,
never more than ``spill_step``, and gives them back the same way once under it.

The load a feed measures lags the shares: resolvers keep the answers they got for the
pool's ``ttl``.  So after a share moves, it moves again only on a measurement taken at
least ``ttl`` later (when the move shows in the load), and by half the error, not all
of it: a controller that reacts to loads that do not yet reflect its last move
overshoots and swings.  In a closed loop (the load falls as blocks move) the share
settles where the load meets the target: for a demand D (the load with nothing shed)
that is ``1 - target / D``, which :func:`steady_shares` computes for what-if tools.

A POP whose load is unknown or stale sheds less by ``spill_step`` per feed interval
until it sheds nothing: a dead feed can never keep traffic away, nor bring it all back
at once.

The result is published as a :class:`~geodns.select.spill.SpillState` in a
:class:`~geodns.select.spill.SpillHolder` that the selector reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from geodns.config import Config
from geodns.select.spill import PopLoad, SpillHolder, SpillState
from geodns.traffic.loads import LoadSnapshot

__all__ = ["SpillController", "steady_shares", "step_share"]

log = logging.getLogger("geodns.loads")

_EPS: Final = 1e-9
GAIN: Final = 0.5  # the part of the relative excess corrected per measurement


def step_share(share: float, load: float, target: float, step: float) -> float:
    """One controller step (see the module docstring)."""
    top = max(load, target)
    delta = 0.0 if top <= 0 else GAIN * (load - target) / top
    delta = max(-step, min(step, delta))
    new = share + delta
    return 0.0 if new < _EPS else 1.0 if new > 1 - _EPS else new


def _spill_pops(config: Config) -> Iterator[tuple[str, str, float, float]]:
    """(pool, POP, spill_at, spill_step) of every spill pool's POPs."""
    for name, pool in config.pools.items():
        if pool.spill:
            for pop in pool.referenced_pops():
                yield name, pop, pool.spill_at, pool.spill_step


def _hold(config: Config, pool: str) -> float:
    """Seconds a moved share waits before its effect shows: the pool's TTL."""
    return float(config.pools[pool].ttl)


def fresh_loads(config: Config, snapshot: LoadSnapshot) -> dict[str, PopLoad]:
    """POPs with a capacity and a fresh load."""
    out: dict[str, PopLoad] = {}
    for name, pop in config.pops.items():
        value = snapshot.load(name)
        if value is not None and pop.capacity:
            out[name] = PopLoad(value, pop.capacity)
    return out


def steady_shares(config: Config, loads: Mapping[str, float]) -> SpillState:
    """The shares the controller settles at when ``loads`` are the demand with nothing
    shed (``1 - spill_at x capacity / load``): what ``simulate --loads`` and
    ``explain --load`` assume."""
    shares: dict[str, dict[str, float]] = {}
    for pool, pop, at, _ in _spill_pops(config):
        cap = config.pops[pop].capacity
        load = loads.get(pop)
        s = 0.0
        if cap and load is not None and load > at * cap:
            s = 1.0 - at * cap / load
        shares.setdefault(pool, {})[pop] = s
    pops: dict[str, PopLoad] = {}
    for name, value in loads.items():
        cfg = config.pops.get(name)
        if cfg is not None and cfg.capacity:
            pops[name] = PopLoad(value, cfg.capacity)
    return SpillState(1, shares, pops, {n: p.spill_at for n, p in config.pools.items()
                                        if p.spill})


class SpillController:
    """Keeps the per-(pool, POP) shares between load snapshots and publishes them."""

    def __init__(self, config: Config, holder: SpillHolder | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.holder = holder or SpillHolder()
        self.clock = clock
        self.shares: dict[tuple[str, str], float] = {}
        self._seen: dict[str, float] = {}  # POP -> timestamp of the last sample stepped on
        self._moved_at: dict[tuple[str, str], float] = {}  # sample time of the last move
        self._decayed: dict[tuple[str, str], float] = {}  # last decay step (clock)
        self._loads: dict[str, PopLoad] = {}
        self._room: dict[str, dict[str, PopLoad]] = {}  # per shedding pool, frozen
        self._generation = 0

    @property
    def active(self) -> bool:
        return any(pool.spill for pool in self.config.pools.values())

    def update_config(self, config: Config) -> None:
        """Keep the shares of (pool, POP) pairs the new config still spills."""
        self.config = config
        keep = {(p, q) for p, q, _, _ in _spill_pops(config)}
        self.shares = {k: v for k, v in self.shares.items() if k in keep}
        self.publish()

    def observe(self, snapshot: LoadSnapshot) -> bool:
        """Step every share whose POP has a new measurement; True when a share moved."""
        self._loads = fresh_loads(self.config, snapshot)
        moved = False
        stepped: set[str] = set()
        for pool, pop, at, step in _spill_pops(self.config):
            sample = snapshot.sample(pop)
            cap = self.config.pops[pop].capacity
            if sample is None or sample.stale or not cap:
                continue
            if self._seen.get(pop) == sample.timestamp:
                continue
            stepped.add(pop)
            self._decayed.pop((pool, pop), None)
            last = self._moved_at.get((pool, pop))
            if last is not None and sample.timestamp < last + _hold(self.config, pool):
                continue  # the last move does not show in this load yet
            old = self.shares.get((pool, pop), 0.0)
            new = step_share(old, sample.value, at * cap, step)
            if abs(new - old) > _EPS:
                self.shares[(pool, pop)] = new
                self._moved_at[(pool, pop)] = sample.timestamp
                moved = True
                if (old == 0) != (new == 0):
                    log.info("spill: pool %s: %s %s shedding (load %g of capacity %g, "
                             "spill_at %g)", pool, pop, "starts" if old == 0 else "stops",
                             sample.value, cap, at)
        for pop in stepped:
            sample = snapshot.sample(pop)
            if sample is not None:
                self._seen[pop] = sample.timestamp
        return moved

    def tick(self) -> bool:
        """Shares of POPs without a fresh load shrink by spill_step per feed interval."""
        now = self.clock()
        moved = False
        for pool, pop, _, step in _spill_pops(self.config):
            share = self.shares.get((pool, pop), 0.0)
            if share <= 0 or pop in self._loads:
                continue
            feed = self.config.loads.get(self.config.pops[pop].load or "")
            interval = feed.interval if feed is not None else 10.0
            last = self._decayed.setdefault((pool, pop), now)
            if now - last < interval:
                continue
            self._decayed[(pool, pop)] = now
            self.shares[(pool, pop)] = 0.0 if share - step < _EPS else share - step
            moved = True
            if self.shares[(pool, pop)] == 0:
                log.info("spill: pool %s: %s stops shedding (no fresh load)", pool, pop)
        return moved

    def state(self) -> SpillState:
        shares: dict[str, dict[str, float]] = {}
        for pool, pop, _, _ in _spill_pops(self.config):
            shares.setdefault(pool, {})[pop] = self.shares.get((pool, pop), 0.0)
        for pool, per_pop in shares.items():
            if not any(s > 0 for s in per_pop.values()):
                self._room.pop(pool, None)  # no longer shedding: measure afresh next time
            elif pool not in self._room:
                self._room[pool] = dict(self._loads)  # starts shedding: room as it is now
            else:  # POPs whose load was unknown then are measured when first seen
                for pop, pl in self._loads.items():
                    self._room[pool].setdefault(pop, pl)
        self._generation += 1
        return SpillState(self._generation, shares, self._loads,
                          {n: p.spill_at for n, p in self.config.pools.items() if p.spill},
                          {p: dict(r) for p, r in self._room.items()})

    def publish(self) -> bool:
        """Install the current state; True when some pool's answers may change."""
        old = self.holder.state
        new = self.state()
        self.holder.state = new
        pools = set(old.tokens) | set(new.tokens)
        return any(old.tokens.get(p, ()) != new.tokens.get(p, ()) for p in pools)
