"""An immutable view of every POP's current load, read once per selection.

The load monitor builds a new :class:`LoadSnapshot` whenever a feed brings new values
or a value crosses its feed's ``max_age``, and publishes it like the health monitor
publishes :class:`~geodns.health.snapshot.HealthSnapshot`: callers swap one reference
and never see half an update.  Stale values stay visible (status pages show them) but
:meth:`LoadSnapshot.load` and :meth:`LoadSnapshot.utilisation` ignore them, so a dead
feed can never steer traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

__all__ = ["LoadSample", "LoadSnapshot"]


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One POP's load as its feed last reported it."""

    pop: str
    value: float  # in the unit of the POP's capacity
    feed: str  # the [loads.NAME] it came from
    timestamp: float  # Unix time the value is from (the feed's own time, else when read)
    stale: bool  # older than the feed's max_age when the snapshot was built
    capacity: float | None = None  # pops.NAME.capacity, for utilisation

    @property
    def utilisation(self) -> float | None:
        """value / capacity (None without a capacity or when stale)."""
        if self.stale or not self.capacity:
            return None
        return self.value / self.capacity

    def age(self, now: float) -> float:
        """Seconds since the value was measured."""
        return max(0.0, now - self.timestamp)


_EMPTY: Final[Mapping[str, LoadSample]] = MappingProxyType({})


def _empty() -> Mapping[str, LoadSample]:
    return _EMPTY


@dataclass(frozen=True, slots=True, eq=False)
class LoadSnapshot:
    """Every POP's load sample at one instant (POPs without a feed are absent).

    ``generation`` counts published snapshots; ``cache_token`` changes only when what
    a decision can depend on changes (a value, a stale flag, a capacity), not when a
    feed merely re-confirms the same values with a newer timestamp.
    """

    generation: int = 0
    samples: Mapping[str, LoadSample] = field(default_factory=_empty)
    created: float = 0.0  # Unix time the snapshot was built
    cache_token: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frozen = MappingProxyType(dict(self.samples)) if self.samples else _EMPTY
        object.__setattr__(self, "samples", frozen)
        object.__setattr__(self, "cache_token", hash(frozenset(
            (s.pop, s.value, s.stale, s.capacity, s.feed) for s in frozen.values())))

    @classmethod
    def empty(cls) -> LoadSnapshot:
        """No loads known: what a server without feeds (or before the first poll) has."""
        return cls()

    def sample(self, pop: str) -> LoadSample | None:
        """The last sample for ``pop``, stale or not (status, explain)."""
        return self.samples.get(pop)

    def load(self, pop: str) -> float | None:
        """The current load of ``pop``; None when unknown or stale (do not act on it)."""
        s = self.samples.get(pop)
        return None if s is None or s.stale else s.value

    def utilisation(self, pop: str) -> float | None:
        """load / capacity of ``pop``; None when either is unknown or the load is stale."""
        s = self.samples.get(pop)
        return None if s is None else s.utilisation

    def same_content(self, other: LoadSnapshot) -> bool:
        """Equal samples (timestamps included): nothing to publish."""
        return dict(self.samples) == dict(other.samples)
