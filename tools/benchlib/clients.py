"""Located clients for the steered workloads: POPs, the GeoLite2-City database, and
samples of client networks (a few thousand for the cache-friendly run, millions of
distinct /24s and /56s for the diverse run, from an index of every located network)."""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import math
import pickle
import random
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.procs import BenchError

REPO = Path(__file__).resolve().parent.parent.parent
GEO_ORIGIN = "example.com"
GEO_QNAME = "www.example.com"


@dataclass(frozen=True)
class Pop:
    name: str
    lat: float
    lon: float
    ip: str


POPS = (
    Pop("iad", 38.9, -77.0, "192.0.2.10"),
    Pop("fra", 50.1, 8.7, "192.0.2.20"),
    Pop("sin", 1.35, 103.8, "192.0.2.30"),
    Pop("gru", -23.5, -46.6, "192.0.2.40"),
    Pop("syd", -33.9, 151.2, "192.0.2.50"),
)
POP_BY_IP = {p.ip: p.name for p in POPS}
# Clients printed before timing the geo run: (network, what it is).
KNOWN_CLIENTS = (
    ("81.2.69.0/24", "London, GB"),
    ("216.160.83.0/24", "Milton WA, US"),
    ("1.128.0.0/24", "AU"),
    ("200.147.0.0/24", "BR"),
    ("175.16.199.0/24", "Changchun, CN"),
)
# Share of the geo client sample per continent (Antarctica has no networks).
CONTINENT_SHARE = {"NA": 0.24, "EU": 0.24, "AS": 0.22, "SA": 0.10, "AF": 0.10, "OC": 0.10}


def geolite2_path() -> Path:
    try:
        from _maxminddb_geolite2 import geolite2_database
    except ImportError:
        return REPO / ".venv/lib/python3.11/site-packages/_maxminddb_geolite2/GeoLite2-City.mmdb"
    return Path(geolite2_database())


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(a)))


def nearest_pop(lat: float, lon: float) -> Pop:
    return min(POPS, key=lambda p: haversine_km(lat, lon, p.lat, p.lon))


@dataclass(frozen=True)
class Client:
    network: str  # a.b.c.0/24
    country: str
    continent: str
    lat: float
    lon: float

    @property
    def address(self) -> str:
        return self.network.split("/")[0]

    @property
    def pop(self) -> Pop:
        return nearest_pop(self.lat, self.lon)


def locate(reader: Any, address: str) -> Client | None:
    rec = reader.get(address)
    if not isinstance(rec, dict):
        return None
    loc = rec.get("location") or {}
    if "latitude" not in loc or "longitude" not in loc:
        return None
    country = (rec.get("country") or rec.get("registered_country") or {}).get("iso_code", "")
    continent = (rec.get("continent") or {}).get("code", "")
    net = ipaddress.ip_network(f"{address}/24", strict=False)
    return Client(str(net), country, continent, float(loc["latitude"]), float(loc["longitude"]))


def sample_clients(reader: Any, count: int, seed: int) -> list[Client]:
    """``count`` distinct located /24s, spread over continents by CONTINENT_SHARE."""
    rnd = random.Random(seed)
    quota = {c: max(1, round(count * s)) for c, s in CONTINENT_SHARE.items()}
    picked: dict[str, Client] = {}
    overflow: list[Client] = []
    for _ in range(200 * count + 100_000):
        if len(picked) >= count:
            break
        addr = ipaddress.IPv4Address(rnd.getrandbits(24) << 8)
        if not addr.is_global or addr.is_multicast or str(addr) in picked:
            continue
        client = locate(reader, str(addr))
        if client is None:
            continue
        if quota.get(client.continent, 0) > 0:
            quota[client.continent] -= 1
            picked[str(addr)] = client
        elif len(overflow) < count:
            overflow.append(client)
    for client in overflow:  # a continent ran short: top up with the others
        if len(picked) >= count:
            break
        picked.setdefault(client.address, client)
    clients = list(picked.values())
    rnd.shuffle(clients)
    return clients


def country_pop_table(reader: Any, seed: int, count: int = 30000) -> dict[str, str]:
    """Majority nearest POP per country code and per continent code (lower case keys)."""
    rnd = random.Random(seed)
    votes: dict[str, Counter[str]] = {}
    found = 0
    for _ in range(count * 5):
        if found >= count:
            break
        addr = ipaddress.IPv4Address(rnd.getrandbits(24) << 8)
        if not addr.is_global:
            continue
        client = locate(reader, str(addr))
        if client is None:
            continue
        found += 1
        for key in (client.country, client.continent):
            if key:
                votes.setdefault(key.lower(), Counter())[client.pop.name] += 1
    return {key: c.most_common(1)[0][0] for key, c in sorted(votes.items())}


# --------------------------------------------------------------------------- diverse clients

INDEX_FORMAT = 1
# IPv6 prefixes that GeoLite2 aliases to the IPv4 tree: not IPv6 clients.
V6_ALIASES = tuple(
    ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0/96", "2001::/32", "2002::/16")
)


@dataclass
class LocatedIndex:
    """Every located network of the database, compactly: per continent, IPv4 networks
    of /24 or wider as (first /24, cumulative /24 count); IPv6 networks of /56 or wider
    as (first /56, prefix length)."""

    v4_starts: dict[str, array[int]] = field(default_factory=dict)
    v4_cum: dict[str, array[int]] = field(default_factory=dict)  # len = networks + 1
    v6_starts: array[int] = field(default_factory=lambda: array("Q"))
    v6_plens: array[int] = field(default_factory=lambda: array("B"))

    def v4_total(self, continent: str) -> int:
        cum = self.v4_cum.get(continent)
        return cum[-1] if cum else 0

    def v4_net(self, continent: str, i: int) -> int:
        """The ``i``-th located /24 of ``continent`` (an integer: address >> 8)."""
        cum = self.v4_cum[continent]
        j = bisect.bisect_right(cum, i) - 1
        return self.v4_starts[continent][j] + (i - cum[j])


def _index_key(mmdb: Path) -> str:
    st = mmdb.stat()
    raw = f"{INDEX_FORMAT}:{mmdb.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def located_index(mmdb: Path, cache_dir: Path | None) -> LocatedIndex:
    """The index of ``mmdb``'s located networks, from ``cache_dir`` when it was built
    before for the same file (building walks every network: about 40 s)."""
    cache = cache_dir / f"located-{_index_key(mmdb)}.pickle" if cache_dir else None
    if cache is not None and cache.exists():
        try:
            with cache.open("rb") as f:
                index = pickle.load(f)
            if isinstance(index, LocatedIndex):
                return index
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass
    import maxminddb

    t0 = time.monotonic()
    print(f"indexing the located networks of {mmdb} (once; cached in {cache_dir})")
    reader = maxminddb.open_database(str(mmdb))
    index = LocatedIndex()
    for net, rec in reader:
        if not isinstance(rec, dict):
            continue
        loc = rec.get("location") or {}
        if "latitude" not in loc or "longitude" not in loc:
            continue
        if net.version == 4:
            if net.prefixlen > 24:
                continue
            cont = (rec.get("continent") or {}).get("code", "")
            starts = index.v4_starts.setdefault(cont, array("I"))
            cum = index.v4_cum.setdefault(cont, array("Q", [0]))
            starts.append(int(net.network_address) >> 8)
            cum.append(cum[-1] + (1 << (24 - net.prefixlen)))
        elif net.prefixlen <= 56 and not any(net.subnet_of(a) for a in V6_ALIASES):
            index.v6_starts.append(int(net.network_address) >> 72)
            index.v6_plens.append(net.prefixlen)
    reader.close()
    print(f"  indexed in {time.monotonic() - t0:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
    return index


@dataclass
class DiverseClients:
    v4: list[int]  # /24s (address >> 8), shuffled
    v6: list[int]  # /56s (address >> 72)
    by_continent: dict[str, int]


def continent_quotas(index: LocatedIndex, count: int) -> dict[str, int]:
    """``count`` split by CONTINENT_SHARE; a continent with fewer located /24s than its
    share gives the rest to the others in proportion to their shares."""
    quota = {c: round(count * s) for c, s in CONTINENT_SHARE.items()}
    quota[max(quota, key=lambda c: quota[c])] += count - sum(quota.values())
    while True:  # each pass with a shortfall fills at least one more continent up
        short = sum(max(0, q - index.v4_total(c)) for c, q in quota.items())
        quota = {c: min(q, index.v4_total(c)) for c, q in quota.items()}
        if short == 0:
            break
        spare = {c: CONTINENT_SHARE[c] for c in quota if quota[c] < index.v4_total(c)}
        if not spare:
            raise BenchError(f"only {sum(quota.values())} located /24s for {count} clients")
        weight = sum(spare.values())
        for c, s in spare.items():
            quota[c] += math.ceil(short * s / weight)
    extra = sum(quota.values()) - count
    for c in sorted(quota, key=lambda c: -quota[c]):  # ceil() may have given a few too many
        take = min(extra, quota[c])
        quota[c] -= take
        extra -= take
    return quota


def sample_diverse(index: LocatedIndex, n4: int, n6: int, seed: int) -> DiverseClients:
    """``n4`` distinct located /24s (by continent share, uniform over each continent's
    located addresses) and ``n6`` distinct located /56s (a uniformly chosen located
    IPv6 network, then a random /56 inside it), deterministic for a seed."""
    rnd = random.Random(seed)
    quota = continent_quotas(index, n4)
    v4: list[int] = []
    for cont in sorted(quota):
        picks = rnd.sample(range(index.v4_total(cont)), quota[cont])
        v4.extend(index.v4_net(cont, i) for i in picks)
    rnd.shuffle(v4)
    v6_seen: set[int] = set()
    v6: list[int] = []
    nets = len(index.v6_starts)
    if n6 > sum(1 << (56 - p) for p in index.v6_plens):
        raise BenchError(f"fewer than {n6} located IPv6 /56s in the GeoIP database")
    while len(v6) < n6:
        j = rnd.randrange(nets)
        plen = index.v6_plens[j]
        net = index.v6_starts[j] + (rnd.getrandbits(56 - plen) if plen < 56 else 0)
        if net not in v6_seen:
            v6_seen.add(net)
            v6.append(net)
    return DiverseClients(v4, v6, {c: q for c, q in quota.items() if q})


def v4_net_text(net24: int) -> str:
    return f"{ipaddress.IPv4Address(net24 << 8)}/24"
