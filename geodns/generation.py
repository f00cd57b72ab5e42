"""One generation: everything an answer is made from, swapped in whole.

A reload (zones, config, GeoIP database) builds a complete new :class:`Generation` and
the handler starts reading it through one reference (``Handler.generation``): a query
sees the old one or the new one, never half of each.  Its inputs never change while it
is served; only its caches fill.  Health is not part of it: it changes far more often
and is published on its own (:class:`~geodns.health.snapshot.HealthHolder`); cached
steered answers remember the snapshot and the ``epoch`` they were chosen under.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from geodns.config import Config
from geodns.runtime import Runtime
from geodns.wire.encode import opt_record
from geodns.zones.store import ZoneStore

__all__ = ["COMPOSED_CACHE_BYTES", "PACKET_CACHE_BYTES", "SHAPE_CACHE_BYTES", "GenCache",
           "Generation"]

PACKET_CACHE_BYTES: Final = 16 << 20  # per transport (twice that with the old generation)
COMPOSED_CACHE_BYTES: Final = 16 << 20
SHAPE_CACHE_BYTES: Final = 1 << 20


class GenCache:
    """A cache bounded by bytes that keeps what is used: two generations; a hit in the
    old one moves the entry to the young one, and when the young one is full the old
    one is dropped, so memory never exceeds twice the budget.

    Entries are admitted on their second sighting (:meth:`admit`): a fixed table of key
    hashes remembers the first one.  Traffic that never repeats (distinct ECS clients,
    random names) is never stored, costs no memory and evicts nothing."""

    __slots__ = ("budget", "doorkeeper", "mask", "old", "size", "young")

    def __init__(self, budget: int, doorkeeper: int = 1 << 18) -> None:
        self.budget = budget
        self.young: dict[bytes, tuple[Any, int]] = {}
        self.old: dict[bytes, tuple[Any, int]] = {}
        self.size = 0
        self.doorkeeper = [0] * doorkeeper
        self.mask = doorkeeper - 1

    def admit(self, key: bytes) -> bool:
        """Was ``key`` seen before (and not since forgotten)?  Remembers it if not."""
        h = hash(key)
        slot = h & self.mask
        if self.doorkeeper[slot] != h:
            self.doorkeeper[slot] = h
            return False
        return True

    def get(self, key: bytes) -> Any:
        hit = self.young.get(key)
        if hit is not None:
            return hit[0]
        hit = self.old.pop(key, None)
        if hit is None:
            return None
        self.put(key, hit[0], hit[1])
        return hit[0]

    def put(self, key: bytes, value: Any, cost: int) -> None:
        if self.size + cost > self.budget:
            self.old = self.young
            self.young = {}
            self.size = 0
        self.young[key] = (value, cost)
        self.size += cost

    def clear(self) -> None:
        self.young = {}
        self.old = {}
        self.size = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class Generation:
    """Config, compiled runtime (GeoIP database, steering maps), zones, and the caches of
    answers made from them.

    ``files`` are the zones read from files; ``store`` is what is answered from (those
    plus the secondary zones kept by transfers).  ``runtime`` is None only for a bare
    handler built by tests and tools."""

    def __init__(self, store: ZoneStore, udp_size: int = 1232, runtime: Runtime | None = None,
                 explain_allowed: Callable[[str], bool] | None = None,
                 additional: bool = True, nsid: bytes | None = None,
                 files: ZoneStore | None = None) -> None:
        self.store = store
        self.files = files if files is not None else store
        self.runtime = runtime
        self.config = runtime.config if runtime is not None else Config.default()
        self.steered = bool(self.config.pools)  # some name may be steered (explain, DYNA)
        self.udp_size = udp_size
        self.explain_allowed = explain_allowed
        self.additional = additional
        self.nsid = nsid
        self.composed = GenCache(COMPOSED_CACHE_BYTES)  # qname + qtype -> Rendered | Template
        # Steered names: their questions go straight to the composed cache.
        self.dyna = frozenset(k for z in store.zones.values() for k in z.dyna_keys)
        # Packet caches per transport: query bytes after the ID -> PacketEntry.  Identical
        # bytes (ECS, payload size, RD, 0x20 case included) get an identical answer while
        # this generation stands and, for steered answers, the health snapshot they were
        # made under (checked on each hit).
        self.packets = (GenCache(PACKET_CACHE_BYTES), GenCache(PACKET_CACHE_BYTES))
        # Steered ECS query shapes per transport (see handler.Shape), their address lengths.
        self.shapes = (GenCache(SHAPE_CACHE_BYTES), GenCache(SHAPE_CACHE_BYTES))
        self.shape_lens: tuple[int, ...] = ()
        # Bumped whenever steered answers may change (health, loads, latency maps):
        # cached steered answers of an older epoch are not replayed.
        self.epoch = 0
        self.opt_plain = (opt_record(udp_size, False), opt_record(udp_size, True))
        # Our OPT up to its RDLENGTH, by DO: an ECS echo is appended to it per query.
        self.opt_head = (self.opt_plain[0][:-2], self.opt_plain[1][:-2])
        self.hits = 0
        self.misses = 0
