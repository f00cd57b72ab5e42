"""A straightforward selection to check the compiled maps against.

No compilation, no caches, nothing shared with geodns.select but the definitions of
the two hashes (weighted's rendezvous hash, the spill hash): one maxminddb lookup per
client in the City and the ASN database, rules scanned in order, the longest ``nets``
match and the longest latency-map row by a linear scan, distances with ``math``,
health applied to the ranking in the plainest way, and spillover decided per client
from the shares and loads it is given.
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

    def spilling(self, pool_name: str, qtype: int, client: str,
                 health: HealthSnapshot) -> bool:
        """Does this client's answer come from a POP that sheds blocks to someone?"""
        return self._decide(pool_name, qtype, client, health)[1]

    def key(self, pool_name: str, qtype: int, client: str, health: HealthSnapshot) -> Key:
        """(kind, addresses, cname, ttl) for ``client`` asking ``pool_name``."""
        return self._decide(pool_name, qtype, client, health)[0]

    def _decide(self, pool_name: str, qtype: int, client: str,
                health: HealthSnapshot) -> tuple[Key, bool]:
        pool = self.config.pools[pool_name]
        pops = self.config.pops
        refs = pool.referenced_pops()
        cname = bool(refs) and all(pops[p].cname for p in refs)
        if not cname and qtype not in (1, 28):
            return ("nodata", (), None, pool.ttl), False
        ip = ipaddress.ip_address(client)
        ranked = self.ranking(pool, ip)
        fam = 4 if qtype == 1 else 6
        key, owners, all_down = self._walk(pool, ranked, fam, cname, health)
        spill = self.spill
        if spill is None or not pool.spill or all_down or not owners:
            return key, False
        first = owners[0]
        share = spill.shares.get((pool.name, first), 0.0)
        if share <= 0:
            return key, False
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
            return key, False
        u, v = spill_point(*self.hash_client(pool, ip))
        if u >= share:
            return key, True
        total = sum(w for _, w in weights)
        acc = 0.0
        to = weights[-1][0]
        for q, w in weights:
            acc += w
            if v < acc / total:
                to = q
                break
        alt = (to, *(x for x in ranked if x not in (first, to)))
        return self._walk(pool, alt, fam, cname, health)[0], True

    def segments(self, pool: Pool, start: int, end: int, family: int,
                 limit: int) -> Iterator[int]:
        """Start addresses of the pieces of [start, end) on which the ranking inputs
        are constant (mmdb networks cut at nets, ASN and latency-row boundaries, and
        at every hash unit of a weighted ranking), at most ``limit``."""
        bits = 32 if family == 4 else 128
        cut_nets = [net for net, _ in pool.nets if net.version == family]
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
            for reader in (self.reader if self.kind(pool) in ("geo", "nearest") else None,
                           self.asn_reader if pool.asn else None):
                if reader is None:
                    continue
                _, plen = reader.get_with_prefix_len(str(ip))
                if family == 4 and reader.metadata().ip_version == 6 and plen > 32:
                    plen -= 96
                size = 1 << (bits - plen)
                nxt = min(nxt, (x // size + 1) * size)
            if self.kind(pool) == "weighted":  # the hash changes every /24 (/56)
                unit = 1 << (bits - (24 if family == 4 else 56))
                nxt = min(nxt, (x // unit + 1) * unit)
            for c in cuts:
                if x < c < nxt:
                    nxt = c
                    break
            x = nxt
