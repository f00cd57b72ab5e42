"""Compile a client-dependent pool into a :class:`RankingMap` per address family.

Every network of the GeoIP database gets the ranking its record decides (geo rules
or distances), adjacent networks with the same ranking merge, then the networks of
the ASN database whose AS has an ``asn.NNNN`` rule are painted over the result, then
``nets`` rules (the longest matching prefix wins).  So a geo pool's precedence is
nets > asn > subdivision > country > continent > default.  Rankings depend only on
the config and the database, never on health, so this runs when either changes, off
the serving path.  The rankings are the whole candidate order: any POP of it may
decide an answer when the ones before it are down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from geodns.config import Config, Pool
from geodns.distinct import distinct_rows
from geodns.geoip.asn_tables import AsnTables
from geodns.geoip.tables import ALIAS_ROW, EMPTY_ROW, FamilyTable, GeoTables
from geodns.select.maps import Alias, Ranking, RankingMap, flatten_nets

__all__ = ["NEAREST_RULE", "NO_LOCATION_RULE", "compile_geo", "compile_nearest",
           "geo_rule", "nearest_order"]

NEAREST_RULE = "nearest by great-circle distance"
NO_LOCATION_RULE = "no location: default list"
EARTH_RADIUS_KM = 6371.0088


def geo_rule(pool: Pool, continent: str | None, country: str | None,
             subdivisions: Sequence[str]) -> Ranking:
    """Most specific rule: subdivision (smallest first) > country > continent > default."""
    for sub in reversed(subdivisions):
        if sub in pool.subdivision:
            return Ranking(f'subdivision."{sub}"', pool.subdivision[sub])
    if country is not None and country in pool.country:
        return Ranking(f"country.{country}", pool.country[country])
    if continent is not None and continent in pool.continent:
        return Ranking(f"continent.{continent}", pool.continent[continent])
    return Ranking("default", pool.default or pool.pops)


def nearest_order(lat: np.ndarray, lon: np.ndarray, coords: Sequence[tuple[float, float]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For points (lat, lon arrays): POP indices by great-circle distance (ties: config
    order) and the distances in km, both shaped (points, POPs)."""
    p1 = np.radians(lat)[:, None]
    l1 = np.radians(lon)[:, None]
    p2 = np.radians(np.array([c[0] for c in coords]))[None, :]
    l2 = np.radians(np.array([c[1] for c in coords]))[None, :]
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    order = np.argsort(dist, axis=1, kind="stable")
    return order, dist


class _Entries:
    """Interned rankings of one pool family (equal rankings share one id; fence maps
    intern sets of fence names the same way)."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}

    def id(self, entry: Any) -> int:
        found = self.ids.get(entry)
        if found is None:
            found = self.ids[entry] = len(self.ids)
        return found

    def list(self) -> list[Any]:
        return list(self.ids)


def _runs(table: FamilyTable | None, family: int, rid_of_row: np.ndarray, empty_rid: int,
          entries: _Entries) -> RankingMap:
    """Per-network rids from per-record rids, merged into runs."""
    if table is None or len(table) == 0:
        return RankingMap.from_starts(family, [0], [empty_rid], entries.list())
    rows = np.asarray(table.rows)
    safe = np.maximum(rows, 0)
    rid = rid_of_row[safe] if len(rid_of_row) else np.full(len(rows), empty_rid,
                                                           dtype=np.int32)
    rid = np.where(rows == EMPTY_ROW, empty_rid, rid).astype(np.int32)
    alias = rows == ALIAS_ROW
    if alias.any():
        depths = np.asarray(table.depth)[alias]
        alias_rid = {int(d): entries.id(Alias(int(d))) for d in np.unique(depths).tolist()}
        lut = np.zeros(129, dtype=np.int32)
        for d, r in alias_rid.items():
            lut[d] = r
        rid[alias] = lut[depths]
    keep = np.ones(len(rid), dtype=bool)
    keep[1:] = rid[1:] != rid[:-1]
    idx = np.flatnonzero(keep)
    hi = np.asarray(table.hi)[idx]
    lo = np.asarray(table.lo)[idx] if table.lo is not None else None
    return RankingMap(family, hi, lo, rid[idx], entries.list())


def _nets(pool: Pool, family: int, entries: _Entries) -> list[tuple[int, int, int]]:
    bits = 32 if family == 4 else 128
    blocks = [(int(net.network_address), net.prefixlen,
               entries.id(Ranking(f'nets."{net}"', pops)))
              for net, pops in pool.nets if net.version == family]
    return flatten_nets(blocks, bits)


def _asn(pool: Pool, asn: AsnTables | None, family: int,
         entries: _Entries) -> list[tuple[int, int, int]]:
    table = asn.family(family) if asn is not None and pool.asn else None
    if table is None:
        return []
    rids = {n: entries.id(Ranking(f"asn.{n}", pops)) for n, pops in pool.asn.items()}
    return table.segments(rids)


def compile_geo(pool: Pool, tables: GeoTables | None, family: int,
                asn: AsnTables | None = None) -> tuple[RankingMap, RankingMap]:
    """geo pools: the rule each record matches, then ``asn`` rules, then ``nets``.

    Returns (the map, the map without ``nets``): IPv4 addresses inside IPv6 (6to4,
    ::ffff:0:0/96) are located like IPv4 ones and their AS is the IPv4 address's
    (MaxMind's ASN databases alias the same blocks), but IPv4 ``nets`` rules do not
    apply to IPv6 clients."""
    entries = _Entries()
    default_rid = entries.id(Ranking("default", pool.default or pool.pops))
    table = tables.family(family) if tables is not None else None
    rid_of_row = np.empty(0, dtype=np.int32)
    if tables is not None and table is not None:
        f = tables.fields
        uniq, inverse = tables.place_keys()
        rid_of_key = np.empty(len(uniq), dtype=np.int32)
        for i, (c, cc, sub) in enumerate(uniq.tolist()):
            continent, country = f.codes[c], f.codes[cc]
            if continent is None and country is None:
                rid_of_key[i] = default_rid  # a record with no place in it
                continue
            rid_of_key[i] = entries.id(geo_rule(pool, continent, country, f.subdivisions[sub]))
        rid_of_row = rid_of_key[inverse]
    rmap = _runs(table, family, rid_of_row, default_rid, entries)
    by_asn = _asn(pool, asn, family, entries)
    segments = _nets(pool, family, entries)
    rmap.entries = entries.list()
    rmap = rmap.overlay(by_asn)
    return rmap.overlay(segments), rmap


def compile_nearest(pool: Pool, config: Config, tables: GeoTables | None,
                    family: int) -> RankingMap:
    """nearest pools: every located record ranks the pool's POPs by distance."""
    entries = _Entries()
    default_rid = entries.id(Ranking(NO_LOCATION_RULE, pool.default or pool.pops))
    table = tables.family(family) if tables is not None else None
    rid_of_row = np.empty(0, dtype=np.int32)
    if tables is not None and table is not None:
        uniq, coord_row = tables.coord_keys()
        pops = pool.pops
        order, _ = nearest_order(uniq[:, 0], uniq[:, 1],
                                 [(config.pops[p].lat, config.pops[p].lon) for p in pops])
        perms, perm_inverse = distinct_rows(order)
        perm_rid = np.array([entries.id(Ranking(NEAREST_RULE, tuple(pops[i] for i in row)))
                             for row in perms.tolist()], dtype=np.int32)
        rid_of_coord = perm_rid[np.asarray(perm_inverse).reshape(-1)]
        rid_of_row = np.where(coord_row >= 0, rid_of_coord[np.maximum(coord_row, 0)],
                              default_rid).astype(np.int32)
    rmap = _runs(table, family, rid_of_row, default_rid, entries)
    rmap.entries = entries.list()
    return rmap


def distances_km(lat: float, lon: float, coords: Sequence[tuple[float, float]]) -> list[float]:
    """Great-circle distances from one point (explain), with the compile's formula."""
    if math.isnan(lat) or math.isnan(lon):
        return []
    _, dist = nearest_order(np.array([lat]), np.array([lon]), coords)
    return [float(d) for d in dist[0]]
