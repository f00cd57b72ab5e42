"""A straightforward selection to check the compiled maps against.

No compilation, no caches, nothing shared with geodns.select but the definitions of
the three hashes (weighted's rendezvous hash, the spill hash, the experiment arm hash):
one maxminddb lookup per client in the City and the ASN database, rules scanned in
order, the longest ``nets`` match and the longest latency-map row by a linear scan,
distances with ``math``, health applied to the ranking in the plainest way, and
spillover decided per client from the shares and loads it is given.

Fences: a client is inside a fence when its place (continent, country, subdivision),
its AS or one of the fence's ``nets`` matches; an IPv6 client in IPv4 space (the blocks
the City database links to IPv4) is inside the fences of its IPv4 address and those
whose IPv6 ``nets`` hold it.  Its ranking is cut to the POPs all its fences (of the
pool) allow before anything else; an empty cut answers ``on_empty``.  Experiment arms:
the client's /24 (/56) hashed with the salt picks the arm, whose POPs cut the ranking
(after the fences) or whose pool answers instead.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from geodns.config import Config, Pool
from geodns.geoip.location import Location
from geodns.health.snapshot import HealthSnapshot
from geodns.select.arms import arm_point, arm_seed
from geodns.select.hrw import hrw_rank, pop_seed
from geodns.select.spill import spill_point
from geodns.traffic.latency_map import LatencyMap

Key = Hashable
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 blocks MaxMind's databases link to their IPv4 tree (block -> where IPv4 starts)
ALIASES = {ipaddress.IPv6Network("::/96"): 96, ipaddress.IPv6Network("::ffff:0:0/96"): 96,
           ipaddress.IPv6Network("2001::/32"): 32, ipaddress.IPv6Network("2002::/16"): 16}


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(
        math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


@dataclass
class Spill:
    """What the reference spills by: shares per (pool, POP), loads and capacities."""

    shares: Mapping[tuple[str, str], float] = field(default_factory=dict)
    loads: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # load, capacity
    room: Mapping[str, tuple[float, float]] | None = None  # receivers' weights (else loads)


@dataclass
class Latency:
    """A latency pool's map, the previous choice per prefix, and whether it is stale."""

    lmap: LatencyMap
    previous: Mapping[Any, str] = field(default_factory=dict)
    stale: bool = False


class Reference:
    def __init__(self, config: Config, reader: Any, asn_reader: Any = None,
                 latency: Mapping[str, Latency] | None = None,
                 spill: Spill | None = None, aliases: bool = True) -> None:
        self.config = config
        self.reader = reader  # a maxminddb reader (or None: no database)
        self.aliases = aliases  # the City database links MaxMind's blocks to IPv4
        self.asn_reader = asn_reader
        self.latency = latency or {}
        self.spill = spill

    def location(self, ip: IP) -> tuple[Location | None, int]:
        if self.reader is None:
            return None, 0
        if ip.version == 6 and self.reader.metadata().ip_version == 4:
            return None, 0
        record, plen = self.reader.get_with_prefix_len(str(ip))
        return Location.from_record(record), plen

    def asn(self, ip: IP) -> int | None:
        if self.asn_reader is None:
            return None
        record = self.asn_reader.get(str(ip))
        return record.get("autonomous_system_number") if isinstance(record, dict) else None

    def kind(self, pool: Pool) -> str:
        return (pool.fallback or "nearest") if pool.strategy == "latency" else pool.strategy

    def latency_ranking(self, pool: Pool, ip: IP) -> tuple[str, ...] | None:
        lat = self.latency.get(pool.name)
        if pool.strategy != "latency" or lat is None or lat.stale:
            return None
        best_net = None
        for net, ms in lat.lmap:
            if net.version == ip.version and ip in net and (
                    best_net is None or net.prefixlen > best_net[0].prefixlen):
                mine = [m for m in ms if m.pop in pool.referenced_pops()]
                if mine:
                    best_net = (net, mine)
        if best_net is None:
            return None
        net, mine = best_net
        mine.sort(key=lambda m: (m.rtt_ms, m.pop))
        first = mine[0]
        prev = next((m for m in mine if m.pop == lat.previous.get(net)), None)
        if prev is not None and not (prev.rtt_ms - first.rtt_ms
                                     > max(pool.margin.ms, pool.margin.ratio * prev.rtt_ms)):
            first = prev
        rest = [m.pop for m in mine if m is not first]
        measured = {m.pop for m in mine}
        if self.kind(pool) == "weighted" or (
                self.kind(pool) in ("geo", "nearest") and self.alias_depth(ip) is not None):
            after = pool.referenced_pops()  # no ranking of the client's own here
        else:
            after = self.ranking(pool, ip, use_latency=False)
        return (first.pop, *rest, *(p for p in after if p not in measured))

    def ranking(self, pool: Pool, ip: IP, use_latency: bool = True) -> tuple[str, ...]:
        by_latency = self.latency_ranking(pool, ip) if use_latency else None
        if by_latency is not None:
            return by_latency
        s = self.kind(pool)
        if s in ("failover", "all"):
            return pool.pops
        if s == "weighted":
            unit = 24 if ip.version == 4 else 56
            prefix = int(ip) >> ((32 if ip.version == 4 else 128) - unit)
            return hrw_rank((prefix << 1) | (ip.version == 6),
                            [(p, pool.weights.get(p, 0.0), pop_seed(p)) for p in pool.pops])
        default = pool.default or pool.pops
        if s == "geo":
            best = None
            for net, pops in pool.nets:
                if net.version == ip.version and ip in net and (
                        best is None or net.prefixlen > best[0].prefixlen):
                    best = (net, pops)
            if best is not None:
                return best[1]
            number = self.asn(ip)
            if number is not None and number in pool.asn:
                return pool.asn[number]
        loc, _ = self.location(ip)
        if s == "geo":
            if loc is None:
                return default
            for sub in reversed(loc.subdivisions):
                if sub in pool.subdivision:
                    return pool.subdivision[sub]
            if loc.country in pool.country:
                return pool.country[loc.country]  # type: ignore[index]
            if loc.continent in pool.continent:
                return pool.continent[loc.continent]  # type: ignore[index]
            return default
        if loc is None or loc.lat is None or loc.lon is None:
            return default
        pops = self.config.pops
        return tuple(sorted(pool.pops, key=lambda p: (
            _km(loc.lat, loc.lon, pops[p].lat, pops[p].lon), pool.pops.index(p))))  # type: ignore[arg-type]

    def hash_client(self, pool: Pool, ip: IP) -> tuple[int, int]:
        """(family, address) whose /24 (/56) the spill hash takes: IPv4 inside IPv6 is
        its IPv4 address where the pool is ranked by GeoIP (and no IPv6 row covers it)."""
        if (ip.version == 6 and self.kind(pool) in ("geo", "nearest") and self.reader is not None
                and self.latency_ranking(pool, ip) is None
                and not any(net.version == 6 and ip in net for net, _ in pool.nets)):
            depth = self.alias_depth(ip)
            if depth is not None:
                return 4, (int(ip) >> (96 - depth)) & 0xFFFFFFFF
        return ip.version, int(ip)

    def alias_depth(self, ip: IP) -> int | None:
        """Where IPv4 starts in ``ip`` when the City database links its block to IPv4."""
        if ip.version == 6 and self.reader is not None:
            for block, depth in ALIASES.items():
                if ip in block and (self.aliases or int(block.network_address) == 0):
                    return depth
        return None

    def hash_unit(self, pool: Pool, ip: IP) -> int:
        """Prefix length, in ``ip``'s family, of the block the spill hash takes."""
        fam, _ = self.hash_client(pool, ip)
        if fam == ip.version:
            return 24 if fam == 4 else 56
        depth = next(d for block, d in ALIASES.items() if ip in block)
        return depth + 24

    def _walk(self, pool: Pool, ranked: tuple[str, ...], fam: int, cname: bool,
              health: HealthSnapshot) -> tuple[Key, tuple[str, ...], bool]:
        """(key, chosen POPs, decided by all_down) of a ranking under ``health``."""
        pops = self.config.pops

        def addrs(p: str) -> tuple[str, ...]:
            return pops[p].ipv4 if fam == 4 else pops[p].ipv6

        cands = [p for p in ranked if cname or addrs(p)]
        if not cands:
            return ("nodata", (), None, pool.ttl), (), False
        want = pool.answers if pool.answers is not None else 10**9
        for honour in (True, False):
            chosen: list[str] = []
            owners: list[str] = []
            skipped = False
            for p in cands:
                if honour and health.state(p) != "up":
                    skipped = True
                    continue
                if cname:
                    return (("cname", (), pops[p].cname,
                             pool.ttl_on_failure if skipped or not honour else pool.ttl),
                            (p,), not honour)
                took = False
                for a in addrs(p):
                    if len(chosen) >= want:
                        break  # (a failed address never needed does not count)
                    if honour and health.address_state(p, a) != "up":
                        skipped = True
                        continue
                    if len(chosen) < want:
                        chosen.append(a)
                        took = True
                if took:
                    owners.append(p)
                if len(chosen) >= want:
                    break
            if chosen:
                return (("addresses", tuple(chosen), None,
                         pool.ttl_on_failure if skipped or not honour else pool.ttl),
                        tuple(owners), not honour)
            if pool.all_down != "fail_open":
                return (pool.all_down, (), None, pool.ttl_on_failure), (), True
        raise AssertionError("fail_open always answers")

    # ------------------------------------------------------------------ fences, arms

    def _fences_here(self, ip: IP) -> set[str]:
        """Every fence whose place, AS or nets holds ``ip`` (as given)."""
        loc, _ = self.location(ip)
        number = self.asn(ip)
        out = set()
        for f in self.config.fences.values():
            placed = loc is not None and (loc.continent in f.continents
                                          or loc.country in f.countries
                                          or any(s in f.subdivisions for s in loc.subdivisions))
            by_as = number is not None and number in f.asn
            by_net = any(n.version == ip.version and ip in n for n in f.nets)
            if placed or by_as or by_net:
                out.add(f.name)
        return out

    def fences_of(self, ip: IP) -> set[str]:
        """The fences holding ``ip`` (IPv4 inside IPv6: its IPv4 address's, plus the
        IPv6 nets holding it)."""
        depth = self.alias_depth(ip)
        if ip.version == 6 and depth is not None:
            v4 = ipaddress.IPv4Address((int(ip) >> (96 - depth)) & 0xFFFFFFFF)
            return self._fences_here(v4) | {
                f.name for f in self.config.fences.values()
                if any(n.version == 6 and ip in n for n in f.nets)}
        return self._fences_here(ip)

    def fence(self, pool: Pool, ip: IP) -> tuple[str | None, frozenset[str], str]:
        """(label, allowed POPs, on_empty) of the pool's fences holding ``ip``."""
        names = self.fences_of(ip)
        mine = [f for name, f in self.config.fences.items()
                if name in names and (f.pools is None or pool.name in f.pools)]
        if not mine:
            return None, frozenset(), ""
        allowed = frozenset(mine[0].pops)
        for f in mine[1:]:
            allowed &= frozenset(f.pops)
        on_empty = "servfail" if any(f.on_empty == "servfail" for f in mine) else "nodata"
        return "+".join(f.name for f in mine), allowed, on_empty

    def arm(self, pool: Pool, ip: IP) -> Any:
        """The pool's experiment arm for ``ip`` (None: no arms)."""
        if not pool.arms:
            return None
        point = arm_point(arm_seed(pool.salt if pool.salt is not None else pool.name),
                          ip.version, int(ip))
        total = sum(a.weight for a in pool.arms)
        acc = 0.0
        for a in pool.arms:
            acc += a.weight
            if a.weight > 0 and point < acc / total:
                return a
        return [a for a in pool.arms if a.weight > 0][-1]

    # ------------------------------------------------------------------ decisions

    def spilling(self, pool_name: str, qtype: int, client: str,
                 health: HealthSnapshot) -> bool:
        """Does this client's answer come from a POP that sheds blocks to someone?"""
        return self._decide(pool_name, qtype, client, health)[1]

    def key(self, pool_name: str, qtype: int, client: str, health: HealthSnapshot) -> Key:
        """(kind, addresses, cname, ttl) for ``client`` asking ``pool_name``."""
        return self._decide(pool_name, qtype, client, health)[0]

    def labelled(self, pool_name: str, qtype: int, client: str, health: HealthSnapshot
                 ) -> tuple[Key, str | None, str | None, tuple[str, ...]]:
        """(key, fence label, arm, chosen POPs) for ``client`` asking ``pool_name``."""
        key, _, fence, arm, owners = self._decide_all(pool_name, qtype, client, health)
        return key, fence, arm, owners

    def _decide(self, pool_name: str, qtype: int, client: str,
                health: HealthSnapshot) -> tuple[Key, bool]:
        key, spilling, _, _, _ = self._decide_all(pool_name, qtype, client, health)
        return key, spilling

    def _decide_all(self, pool_name: str, qtype: int, client: str, health: HealthSnapshot,
                    label: str | None = None
                    ) -> tuple[Key, bool, str | None, str | None, tuple[str, ...]]:
        pool = self.config.pools[pool_name]
        ip = ipaddress.ip_address(client)
        arm = self.arm(pool, ip)
        if arm is not None and arm.pool is not None:
            return self._decide_all(arm.pool, qtype, client, health, arm.name)
        if arm is not None:
            label = arm.name
        pops = self.config.pops
        refs = pool.referenced_pops()
        cname = bool(refs) and all(pops[p].cname for p in refs)
        if not cname and qtype not in (1, 28):  # (decided before any arm or fence)
            return ("nodata", (), None, pool.ttl), False, None, None, ()
        ranked = self.ranking(pool, ip)
        fence, allowed, on_empty = self.fence(pool, ip)
        if fence is not None:
            ranked = tuple(p for p in ranked if p in allowed)
            if not ranked:
                return (on_empty, (), None, pool.ttl), False, fence, label, ()
        if arm is not None and arm.pops is not None:
            ranked = tuple(p for p in ranked if p in arm.pops)
        fam = 4 if qtype == 1 else 6
        key, owners, all_down = self._walk(pool, ranked, fam, cname, health)
        spill = self.spill
        if spill is None or not pool.spill or all_down or not owners:
            return key, False, fence, label, owners
        first = owners[0]
        share = spill.shares.get((pool.name, first), 0.0)
        if share <= 0:
            return key, False, fence, label, owners
        after = ranked[ranked.index(first) + 1:]
        up = [q for q in after if (cname or (pops[q].ipv4 if fam == 4 else pops[q].ipv6))
              and health.state(q) == "up" and q in spill.loads
              and spill.loads[q][0] < spill.loads[q][1]]  # never past capacity now
        room = {q: (spill.room or spill.loads).get(q, spill.loads[q]) for q in up}
        weights = [(q, pool.spill_at * room[q][1] - room[q][0]) for q in up]
        if not any(w > 0 for _, w in weights):
            weights = [(q, room[q][1] - room[q][0]) for q in up]
        weights = [(q, w) for q, w in weights if w > 0][:2]  # the next two with room
        if not weights:
            return key, False, fence, label, owners
        u, v = spill_point(*self.hash_client(pool, ip))
        if u >= share:
            return key, True, fence, label, owners
        total = sum(w for _, w in weights)
        acc = 0.0
        to = weights[-1][0]
        for q, w in weights:
            acc += w
            if v < acc / total:
                to = q
                break
        alt = (to, *(x for x in ranked if x not in (first, to)))
        key, owners, _ = self._walk(pool, alt, fam, cname, health)
        return key, True, fence, label, owners

    def segments(self, pool: Pool, start: int, end: int, family: int,
                 limit: int) -> Iterator[int]:
        """Start addresses of the pieces of [start, end) on which the ranking inputs
        are constant (mmdb networks cut at nets, ASN and latency-row boundaries, and
        at every hash unit of a weighted ranking), at most ``limit``."""
        bits = 32 if family == 4 else 128
        cut_nets = [net for net, _ in pool.nets if net.version == family]
        fences = [f for f in self.config.fences.values()
                  if f.pools is None or pool.name in f.pools]
        cut_nets += [net for f in fences for net in f.nets if net.version == family]
        lat = self.latency.get(pool.name)
        if lat is not None and not lat.stale:
            cut_nets += [net for net, _ in lat.lmap if net.version == family]
        cuts = sorted({int(x) for net in cut_nets
                       for x in (net.network_address, int(net.broadcast_address) + 1)})
        x = start
        for _ in range(limit):
            if x >= end:
                return
            yield x
            nxt = end
            ip = ipaddress.ip_address(x) if family == 4 else ipaddress.IPv6Address(x)
            for reader in (self.reader if self.kind(pool) in ("geo", "nearest") or any(
                    f.countries or f.continents or f.subdivisions for f in fences) else None,
                           self.asn_reader if pool.asn or any(f.asn for f in fences)
                           else None):
                if reader is None:
                    continue
                _, plen = reader.get_with_prefix_len(str(ip))
                if family == 4 and reader.metadata().ip_version == 6 and plen > 32:
                    plen -= 96
                size = 1 << (bits - plen)
                nxt = min(nxt, (x // size + 1) * size)
            if self.kind(pool) == "weighted" or pool.arms:  # hashes change every /24 (/56)
                unit = 1 << (bits - (24 if family == 4 else 56))
                nxt = min(nxt, (x // unit + 1) * unit)
            for c in cuts:
                if x < c < nxt:
                    nxt = c
                    break
            x = nxt
