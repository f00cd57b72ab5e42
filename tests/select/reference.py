"""A straightforward selection to check the compiled maps against.

No compilation, no caches, nothing shared with geodns.select but the hash of weighted
pools (its definition): one maxminddb lookup per client, rules scanned in order, the
longest ``nets`` match by a linear scan, distances with ``math``, health applied to
the ranking in the plainest way.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Hashable, Iterator
from typing import Any

from geodns.config import Config, Pool
from geodns.geo import Location
from geodns.health.snapshot import HealthSnapshot
from geodns.select.hrw import hrw_rank, pop_seed

Key = Hashable


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(
        math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


class Reference:
    def __init__(self, config: Config, reader: Any) -> None:
        self.config = config
        self.reader = reader  # a maxminddb reader (or None: no database)

    def location(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                 ) -> tuple[Location | None, int]:
        if self.reader is None:
            return None, 0
        if ip.version == 6 and self.reader.metadata().ip_version == 4:
            return None, 0
        record, plen = self.reader.get_with_prefix_len(str(ip))
        return Location.from_record(record), plen

    def ranking(self, pool: Pool, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                ) -> tuple[str, ...]:
        s = pool.strategy
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

    def key(self, pool_name: str, qtype: int, client: str, health: HealthSnapshot) -> Key:
        """(kind, addresses, cname, ttl) for ``client`` asking ``pool_name``."""
        pool = self.config.pools[pool_name]
        pops = self.config.pops
        refs = pool.referenced_pops()
        cname = bool(refs) and all(pops[p].cname for p in refs)
        if not cname and qtype not in (1, 28):
            return ("nodata", (), None, pool.ttl)
        ip = ipaddress.ip_address(client)
        ranked = self.ranking(pool, ip)
        fam = 4 if qtype == 1 else 6

        def addrs(p: str) -> tuple[str, ...]:
            return pops[p].ipv4 if fam == 4 else pops[p].ipv6

        cands = [p for p in ranked if cname or addrs(p)]
        if not cands:
            return ("nodata", (), None, pool.ttl)
        want = pool.answers if pool.answers is not None else 10**9
        for honour in (True, False):
            chosen: list[str] = []
            skipped = False
            for p in cands:
                if honour and health.state(p) != "up":
                    skipped = True
                    continue
                if cname:
                    return ("cname", (), pops[p].cname,
                            pool.ttl_on_failure if skipped or not honour else pool.ttl)
                for a in addrs(p):
                    if honour and health.address_state(p, a) != "up":
                        skipped = True
                        continue
                    if len(chosen) < want:
                        chosen.append(a)
                if len(chosen) >= want:
                    break
            if chosen:
                return ("addresses", tuple(chosen), None,
                        pool.ttl_on_failure if skipped or not honour else pool.ttl)
            if pool.all_down != "fail_open":
                return (pool.all_down, (), None, pool.ttl_on_failure)
        raise AssertionError("fail_open always answers")

    def segments(self, pool: Pool, start: int, end: int, family: int,
                 limit: int) -> Iterator[int]:
        """Start addresses of the pieces of [start, end) on which the ranking inputs
        are constant (mmdb networks cut at nets boundaries), at most ``limit``."""
        bits = 32 if family == 4 else 128
        cuts = sorted({int(x) for net, _ in pool.nets if net.version == family
                       for x in (net.network_address, int(net.broadcast_address) + 1)})
        x = start
        for _ in range(limit):
            if x >= end:
                return
            yield x
            if self.reader is None or pool.strategy not in ("geo", "nearest"):
                nxt = end
            else:
                ip = ipaddress.ip_address(x) if family == 4 else ipaddress.IPv6Address(x)
                _, plen = self.reader.get_with_prefix_len(str(ip))
                if family == 4 and self.reader.metadata().ip_version == 6 and plen > 32:
                    plen -= 96
                size = 1 << (bits - plen)
                nxt = (x // size + 1) * size
            for c in cuts:
                if x < c < nxt:
                    nxt = c
                    break
            x = nxt
