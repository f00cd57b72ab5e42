"""An immutable view of every health state, read once per selection.

The checker and the admin API build a new snapshot whenever anything changes and
swap it in atomically; selection never sees a half-updated picture, and caches key
on :attr:`HealthSnapshot.cache_token` (generation plus a content fingerprint, so
two snapshots that accidentally share a generation still never share cache entries).

Keys are a POP name (the POP's own state) or ``(pop, address)`` (one address of the
POP, address text as normalized in the config).  Anything not mentioned is ``up``:
until the checker exists everything is up unless an override says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

__all__ = ["STATES", "HealthKey", "HealthSnapshot", "State", "key_label", "parse_key"]

State = Literal["up", "down", "drain"]
HealthKey = str | tuple[str, str]
STATES: Final = ("up", "down", "drain")
_EMPTY: Final[Mapping[HealthKey, State]] = MappingProxyType({})


def key_label(key: HealthKey) -> str:
    """``fra`` or ``fra/192.0.2.20``: how a key is written in logs, the API and metrics."""
    return key if isinstance(key, str) else f"{key[0]}/{key[1]}"


def parse_key(label: str) -> HealthKey:
    """The inverse of :func:`key_label`: ``fra`` or ``("fra", "192.0.2.20")``."""
    pop, sep, address = label.partition("/")
    return (pop, address) if sep else pop


def _freeze(states: Mapping[HealthKey, State] | None, what: str) -> Mapping[HealthKey, State]:
    if not states:
        return _EMPTY
    for key, state in states.items():
        if state not in STATES:
            raise ValueError(f"{what} state for {key!r} must be up, down or drain: {state!r}")
        if not isinstance(key, str) and not (
            isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)
        ):
            raise ValueError(f"{what} key must be a POP name or (pop, address): {key!r}")
    return MappingProxyType(dict(states))


def _empty() -> Mapping[HealthKey, State]:
    return _EMPTY


@dataclass(frozen=True, slots=True, eq=False)
class HealthSnapshot:
    """Effective, real (checked) and forced (override) states at one instant.

    ``drain`` means "no new answers but still checked": selection treats it like down.
    """

    generation: int
    real: Mapping[HealthKey, State] = field(default_factory=_empty)
    overrides: Mapping[HealthKey, State] = field(default_factory=_empty)
    effective: Mapping[HealthKey, State] = field(init=False, repr=False)
    cache_token: tuple[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        real = _freeze(self.real, "real")
        overrides = _freeze(self.overrides, "override")
        object.__setattr__(self, "real", real)
        object.__setattr__(self, "overrides", overrides)
        # Only non-up entries matter for selection: "up" is the default anyway.
        eff = {k: s for k, s in real.items() if s != "up"}
        for k, s in overrides.items():
            if s == "up":
                eff.pop(k, None)
            else:
                eff[k] = s
        object.__setattr__(self, "effective", MappingProxyType(eff))
        object.__setattr__(self, "cache_token", (self.generation, hash(frozenset(eff.items()))))

    @classmethod
    def all_up(cls, generation: int = 0) -> HealthSnapshot:
        """Everything up, nothing forced."""
        return cls(generation)

    @classmethod
    def build(cls, real: Mapping[HealthKey, State] | None = None,
              overrides: Mapping[HealthKey, State] | None = None,
              generation: int = 0) -> HealthSnapshot:
        """From checked states and operator overrides (override wins over real)."""
        return cls(generation, real or _EMPTY, overrides or _EMPTY)

    # --- reading ------------------------------------------------------------------

    def state(self, pop: str) -> State:
        """Effective state of the POP itself."""
        return self.effective.get(pop, "up")

    def address_state(self, pop: str, address: str) -> State:
        """Effective state of one address of ``pop`` (its POP's state not folded in)."""
        return self.effective.get((pop, address), "up")

    def usable(self, pop: str, address: str) -> bool:
        """May ``address`` of ``pop`` be handed out: both the POP and the address are up."""
        eff = self.effective
        return eff.get(pop, "up") == "up" and eff.get((pop, address), "up") == "up"

    def real_state(self, key: HealthKey) -> State:
        """What the checker last concluded (``up`` when never checked)."""
        return self.real.get(key, "up")

    def forced(self, key: HealthKey) -> State | None:
        """The operator override, if any."""
        return self.overrides.get(key)

    def not_up(self) -> Iterator[tuple[HealthKey, State]]:
        """Every key whose effective state is down or drain."""
        return iter(self.effective.items())

    # --- deriving -----------------------------------------------------------------

    def evolve(self, real: Mapping[HealthKey, State] | None = None,
               overrides: Mapping[HealthKey, State] | None = None) -> HealthSnapshot:
        """A snapshot with ``real`` and/or ``overrides`` replaced; generation+1 if anything
        changed, else ``self`` (so caches stay warm on no-op updates)."""
        new_real = _freeze(real, "real") if real is not None else self.real
        new_over = _freeze(overrides, "override") if overrides is not None else self.overrides
        if dict(new_real) == dict(self.real) and dict(new_over) == dict(self.overrides):
            return self
        return HealthSnapshot(self.generation + 1, new_real, new_over)

    def with_real(self, key: HealthKey, state: State) -> HealthSnapshot:
        """One checked state changed."""
        real = dict(self.real)
        real[key] = state
        return self.evolve(real=real)

    def with_override(self, key: HealthKey, state: State | None) -> HealthSnapshot:
        """Force ``key`` to ``state``; None clears the override."""
        over = dict(self.overrides)
        if state is None:
            over.pop(key, None)
        else:
            over[key] = state
        return self.evolve(overrides=over)


class HealthHolder:
    """The one published health snapshot: the monitor (or a worker's supervisor) replaces
    it whole, the handler and the steering side read it per decision.  It lives beside
    the served :class:`~geodns.generation.Generation`, not in it, because it changes
    far more often than zones or config."""

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: HealthSnapshot | None = None) -> None:
        self.snapshot = snapshot or HealthSnapshot.all_up()
