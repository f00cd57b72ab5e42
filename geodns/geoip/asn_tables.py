"""Every network of an ASN database with its AS number, as arrays, for ``asn.NNNN`` rules.

The search tree is walked with the same vectorised walker as the City tables
(:class:`geodns.geoip.mmdb.SearchTree`) and only ``autonomous_system_number`` is decoded,
once per distinct record: GeoLite2-ASN's networks compile in about a second, against
minutes through a per-network reader.  IPv6 blocks that the database links to its IPv4
tree (``::ffff:0:0/96``, 6to4, Teredo) are left out of the IPv6 table: clients there
are steered by their IPv4 address, as the City tables do (:class:`~geodns.select.maps.Alias`).
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import maxminddb
import numpy as np

from geodns.geoip.mmdb import EMPTY, V4_ALIAS, Networks, SearchTree, _FieldReader
from geodns.watch import FileKey, file_key

__all__ = ["AsnTables", "asn_tables"]

_WANT = frozenset({"autonomous_system_number"})
NO_ASN = -1


@dataclass(frozen=True, slots=True)
class AsnFamily:
    """The networks of one family that carry an AS number (sorted, disjoint)."""

    family: int
    networks: Networks  # every network of the family
    asn: np.ndarray  # int64 per network, NO_ASN for none (and for IPv4 aliases)

    def segments(self, numbers: Mapping[int, int]) -> list[tuple[int, int, int]]:
        """``(start, end, rid)`` of the networks whose AS number is a key of ``numbers``
        (rid = its value), in address order."""
        if not numbers or len(self.asn) == 0:
            return []
        wanted = np.isin(self.asn, np.fromiter(numbers, dtype=np.int64))
        idx = np.flatnonzero(wanted)
        if len(idx) == 0:
            return []
        bits = 32 if self.family == 4 else 128
        starts = self.networks.starts(idx)
        depths = self.networks.depth[idx].tolist()
        found = self.asn[idx].tolist()
        return [(s, s + (1 << (bits - d)), numbers[a])
                for s, d, a in zip(starts, depths, found, strict=True)]


@dataclass(frozen=True, slots=True)
class AsnTables:
    """Both families of an ASN database (``v6`` None for IPv4-only databases)."""

    v4: AsnFamily
    v6: AsnFamily | None

    def family(self, family: int) -> AsnFamily | None:
        return self.v4 if family == 4 else self.v6

    @classmethod
    def build(cls, path: Path) -> AsnTables:
        """Walk the database at ``path`` (any mmdb whose records carry
        ``autonomous_system_number``: GeoLite2-ASN, GeoIP2-ISP)."""
        with maxminddb.open_database(str(path)) as reader:
            meta = reader.metadata()
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            tree = SearchTree(buf, int(meta.node_count), int(meta.record_size),
                              int(meta.ip_version))
            fams = [tree.networks(4)]
            if tree.ip_version == 6:
                fams.append(tree.networks(6))
            reader_ = _FieldReader(buf, tree.search_tree_size + 16)
            numbers: dict[int, int] = {}
            out = []
            for nets in fams:
                values = nets.value.tolist()
                asn = np.full(len(values), NO_ASN, dtype=np.int64)
                for i, v in enumerate(values):
                    if v in (EMPTY, V4_ALIAS):
                        continue
                    n = numbers.get(v)
                    if n is None:
                        got = reader_.fields(v, _WANT).get("autonomous_system_number")
                        n = numbers[v] = got if isinstance(got, int) else NO_ASN
                    asn[i] = n
                out.append(AsnFamily(nets.family, nets, asn))
        return cls(out[0], out[1] if len(out) > 1 else None)


_cache: dict[Path, tuple[FileKey | None, AsnTables]] = {}
_lock = threading.Lock()


def asn_tables(path: Path) -> AsnTables:
    """The tables of the ASN database at ``path``, built once per version of the file
    (a config reload that keeps the same file reuses them).  Raises what opening the
    file raises (the caller reports it as a config problem)."""
    key = file_key(path)
    with _lock:
        hit = _cache.get(path)
        if hit is not None and key is not None and hit[0] == key:
            return hit[1]
    tables = AsnTables.build(path)
    with _lock:
        _cache.clear()  # one database is configured at a time: keep the newest only
        _cache[path] = (key, tables)
    return tables

