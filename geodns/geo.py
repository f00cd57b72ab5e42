"""GeoIP lookups (maxminddb C reader) reduced to what POP selection needs.

A lookup returns the client's :class:`Location` and the prefix length of the mmdb
network holding it: every address in that network has the same record, which is
what makes per-network caching and ECS scopes sound.  IPv4 prefix lengths are
relative to IPv4 even on IPv6 databases (the C reader subtracts the 96 bits of
the ``::/96`` IPv4 subtree); :meth:`GeoDB.lookup_int` clamps them defensively.
"""

from __future__ import annotations

import math
import mmap
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

from geodns.config import default_geoip_database

__all__ = ["FileKey", "GeoDB", "Location", "file_key", "haversine_km"]

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns

EARTH_RADIUS_KM = 6371.0088
RECORD_CACHE_SIZE = 200_000  # decoded records kept per database (by data pointer)


def file_key(path: str | Path) -> FileKey | None:
    """A cheap identity of the file's content version; None when it cannot be stat'ed.

    Replacing the file (rename over it: new inode) or rewriting it in place (size or
    mtime) changes the key, so the reloader can poll this instead of hashing 50 MB.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km: the "nearest POP" metric."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Location:
    """The parts of a GeoIP record that selection and explain use (hashable: a cache key)."""

    continent: str | None = None
    country: str | None = None
    subdivisions: tuple[str, ...] = ()  # ISO 3166-2 "XX-YYY", largest first, as in mmdb
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_km: int | None = None

    @property
    def has_coords(self) -> bool:
        return self.lat is not None and self.lon is not None

    @classmethod
    def from_record(cls, record: Any) -> Location | None:
        """Extract from a GeoIP2 City/Country record; None when it holds nothing usable."""
        if not isinstance(record, dict):
            return None
        continent = _get(record, "continent", "code")
        country = _get(record, "country", "iso_code") or _get(
            record, "registered_country", "iso_code")
        subs: tuple[str, ...] = ()
        raw_subs = record.get("subdivisions")
        if country and isinstance(raw_subs, list):
            subs = tuple(
                f"{country}-{s['iso_code']}".upper()
                for s in raw_subs
                if isinstance(s, dict) and isinstance(s.get("iso_code"), str)
            )
        loc = record.get("location")
        lat = lon = None
        acc = None
        if isinstance(loc, dict):
            la, lo = loc.get("latitude"), loc.get("longitude")
            if isinstance(la, int | float) and isinstance(lo, int | float):
                lat, lon = float(la), float(lo)
            a = loc.get("accuracy_radius")
            acc = a if isinstance(a, int) else None
        city = None
        names = _get(record, "city", "names")
        if isinstance(names, dict):
            en = names.get("en")
            city = en if isinstance(en, str) else None
        if not (continent or country or lat is not None):
            return None
        return cls(
            continent=continent.upper() if isinstance(continent, str) else None,
            country=country.upper() if isinstance(country, str) else None,
            subdivisions=subs, city=city, lat=lat, lon=lon, accuracy_km=acc,
        )

    def describe(self) -> str:
        """Short human text for explain output (ASCII codes, English city name)."""
        parts = []
        if self.continent:
            parts.append(f"continent={self.continent}")
        if self.country:
            parts.append(f"country={self.country}")
        if self.subdivisions:
            parts.append(f"subdivision={','.join(self.subdivisions)}")
        if self.city:
            parts.append(f"city={self.city}")
        if self.has_coords:
            parts.append(f"loc={self.lat:.4f},{self.lon:.4f}")
        if self.accuracy_km is not None:
            parts.append(f"radius={self.accuracy_km}km")
        return " ".join(parts) or "unknown"


def _get(record: dict[str, Any], outer: str, inner: str) -> Any:
    sub = record.get(outer)
    return sub.get(inner) if isinstance(sub, dict) else None


class _TreeWalker:
    """Walks the mmdb search tree in Python and returns the terminal record value.

    The C reader decodes the whole record (names in eight languages) on every lookup,
    about 15 us; selection needs the network and a few fields.  Walking the tree is
    about 5 us, and the terminal value (a data-section pointer) identifies the record,
    so each distinct record is decoded once (by the C reader) and cached as a Location.
    """

    def __init__(self, path: Path, node_count: int, record_size: int, ip_version: int) -> None:
        if record_size not in (24, 28, 32):
            raise ValueError(f"unsupported record size {record_size}")
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            self._file.close()
            raise
        self.node_count = node_count
        self.record_size = record_size
        self._node_bytes = record_size // 4
        if len(self._mm) < node_count * self._node_bytes:
            self.close()
            raise ValueError("search tree larger than the file")
        self.ipv4_start = 0
        self.ipv4_start_depth = 0
        if ip_version == 6:
            node = 0
            depth = 0
            while depth < 96 and node < node_count:
                node = self._left(node)
                depth += 1
            self.ipv4_start, self.ipv4_start_depth = node, depth

    def close(self) -> None:
        self._mm.close()
        self._file.close()

    def _left(self, node: int) -> int:
        mm = self._mm
        if self.record_size == 24:
            off = node * 6
            return (mm[off] << 16) | (mm[off + 1] << 8) | mm[off + 2]
        if self.record_size == 28:
            off = node * 7
            return ((mm[off + 3] & 0xF0) << 20) | (mm[off] << 16) | (mm[off + 1] << 8) \
                | mm[off + 2]
        off = node * 8
        return int.from_bytes(mm[off:off + 4], "big")

    def children(self, node: int) -> tuple[int, int]:
        """(left, right) record values of an inner node."""
        mm = self._mm
        if self.record_size == 28:
            off = node * 7
            mid = mm[off + 3]
            return (((mid & 0xF0) << 20) | (mm[off] << 16) | (mm[off + 1] << 8) | mm[off + 2],
                    ((mid & 0x0F) << 24) | (mm[off + 4] << 16) | (mm[off + 5] << 8)
                    | mm[off + 6])
        if self.record_size == 24:
            off = node * 6
            return ((mm[off] << 16) | (mm[off + 1] << 8) | mm[off + 2],
                    (mm[off + 3] << 16) | (mm[off + 4] << 8) | mm[off + 5])
        off = node * 8
        return int.from_bytes(mm[off:off + 4], "big"), int.from_bytes(mm[off + 4:off + 8], "big")

    def find(self, node: int, addr: int, bits: int) -> tuple[int, int]:
        """(terminal record value, depth) for ``addr`` starting at ``node``."""
        mm = self._mm
        nc = self.node_count
        shift = bits - 1
        if self.record_size == 28:
            while node < nc and shift >= 0:
                off = node * 7
                if (addr >> shift) & 1:
                    node = ((mm[off + 3] & 0x0F) << 24) | (mm[off + 4] << 16) \
                        | (mm[off + 5] << 8) | mm[off + 6]
                else:
                    node = ((mm[off + 3] & 0xF0) << 20) | (mm[off] << 16) \
                        | (mm[off + 1] << 8) | mm[off + 2]
                shift -= 1
        elif self.record_size == 24:
            while node < nc and shift >= 0:
                off = node * 6 + (3 if (addr >> shift) & 1 else 0)
                node = (mm[off] << 16) | (mm[off + 1] << 8) | mm[off + 2]
                shift -= 1
        else:
            while node < nc and shift >= 0:
                off = node * 8 + (4 if (addr >> shift) & 1 else 0)
                node = int.from_bytes(mm[off:off + 4], "big")
                shift -= 1
        return node, bits - 1 - shift


class GeoDB:
    """An open mmdb file; immutable once opened (the server swaps in a new one on change)."""

    def __init__(self, reader: Any, path: Path, key: FileKey | None,
                 fast: bool = True) -> None:
        self._reader = reader
        self.path = path
        self.key = key  # file identity at open time; compare with file_key(path)
        meta = reader.metadata()
        self.ip_version: int = int(meta.ip_version)
        self.database_type: str = str(meta.database_type)
        self.build_epoch: int = int(meta.build_epoch)
        self._walker: _TreeWalker | None = None
        self._records: dict[int, Location | None] = {}
        if fast:
            try:
                self._walker = _TreeWalker(path, int(meta.node_count), int(meta.record_size),
                                           self.ip_version)
            except (OSError, ValueError):
                self._walker = None  # the C reader alone still works

    @classmethod
    def open(cls, path: str | Path | None = None, *, fast: bool = True) -> GeoDB:
        """Open ``path`` (default: packaged GeoLite2-City) with the C reader when available.

        ``fast``: also walk the search tree in Python with a per-record cache (same
        answers, about 3x cheaper per lookup).  The stat is taken before opening, so a
        file replaced during the open is seen as changed on the next poll, not missed.
        """
        p = Path(path) if path is not None else default_geoip_database()
        key = file_key(p)
        try:
            reader = maxminddb.open_database(str(p), maxminddb.MODE_MMAP_EXT)
        except (ImportError, ValueError, AttributeError):
            reader = maxminddb.open_database(str(p), maxminddb.MODE_AUTO)
        return cls(reader, p, key, fast)

    def changed(self) -> bool:
        """True when the file on disk is no longer the one that was opened."""
        return file_key(self.path) != self.key

    def close(self) -> None:
        if self._walker is not None:
            self._walker.close()
        self._reader.close()

    def lookup_int(self, family: int, addr: int) -> tuple[Location | None, int]:
        """Location of address ``addr`` (IP version ``family``) and its mmdb prefix length.

        The prefix is relative to the family (0..32 for IPv4).  Addresses the database
        cannot hold (IPv6 in an IPv4-only db) are "unknown" over the whole space: prefix 0.
        """
        w = self._walker
        if w is None:
            return self._lookup_c(family, addr)
        if family == 4:
            if w.ipv4_start >= w.node_count:  # the whole IPv4 space is one record
                value, plen = w.ipv4_start, 0
            else:
                value, plen = w.find(w.ipv4_start, addr, 32)
        else:
            if self.ip_version == 4:
                return None, 0
            value, plen = w.find(0, addr, 128)
        return self._location(value, family, addr), plen

    def _location(self, value: int, family: int, addr: int) -> Location | None:
        """Location of terminal record ``value``; ``addr`` is any address it covers."""
        w = self._walker
        assert w is not None
        if value <= w.node_count:
            return None
        records = self._records
        if value in records:
            return records[value]
        loc, _ = self._lookup_c(family, addr)
        if len(records) >= RECORD_CACHE_SIZE:
            records.clear()
        records[value] = loc
        return loc

    def tree_path(self, family: int, addr: int) -> list[int] | None:
        """The inner search-tree nodes on ``addr``'s path: element d sits at depth d
        (IPv4 depths count from the IPv4 subtree).  None without the tree walker."""
        w = self._walker
        if w is None or (family == 6 and self.ip_version == 4):
            return None
        bits = 32 if family == 4 else 128
        node = w.ipv4_start if family == 4 else 0
        path: list[int] = []
        nc = w.node_count
        while node < nc and len(path) < bits:
            path.append(node)
            left, right = w.children(node)
            node = right if (addr >> (bits - len(path))) & 1 else left
        return path

    def sibling_networks(self, family: int, addr: int, path: list[int], prefix: int,
                         max_nodes: int) -> list[tuple[int, int, Location | None]] | None:
        """Every mmdb network inside the sibling of block ``addr/prefix`` (the other half
        of ``addr/(prefix-1)``), as (start, prefix, location).

        ``path`` comes from :meth:`tree_path`.  None when that would visit more than
        ``max_nodes`` inner nodes.  This lets scope widening check a whole sibling
        block for about a microsecond per network instead of a lookup per network.
        """
        w = self._walker
        if w is None or not 0 < prefix <= len(path):
            return None
        bits = 32 if family == 4 else 128
        shift = bits - prefix
        start = ((addr >> shift) ^ 1) << shift
        left, right = w.children(path[prefix - 1])
        node = right if (start >> shift) & 1 else left
        nc = w.node_count
        out: list[tuple[int, int, Location | None]] = []
        stack = [(node, prefix, start)]
        visited = 0
        while stack:
            node, depth, net = stack.pop()
            if node >= nc:
                out.append((net, depth, self._location(node, family, net)))
                continue
            visited += 1
            if visited > max_nodes or depth >= bits:
                return None
            left, right = w.children(node)
            stack.append((right, depth + 1, net | (1 << (bits - 1 - depth))))
            stack.append((left, depth + 1, net))
        return out

    def _lookup_c(self, family: int, addr: int) -> tuple[Location | None, int]:
        """The same lookup through the reader alone (decodes the full record)."""
        if family == 4:
            text = socket.inet_ntop(socket.AF_INET, addr.to_bytes(4, "big"))
            bits = 32
        else:
            if self.ip_version == 4:
                return None, 0
            text = socket.inet_ntop(socket.AF_INET6, addr.to_bytes(16, "big"))
            bits = 128
        try:
            record, plen = self._reader.get_with_prefix_len(text)
        except ValueError:
            return None, 0
        plen = 0 if plen < 0 else bits if plen > bits else plen
        return Location.from_record(record), plen

    def lookup(self, ip: str) -> tuple[Location | None, str]:
        """Convenience for tools: location and network (CIDR text) of an address string."""
        import ipaddress

        addr = ipaddress.ip_address(ip)
        loc, plen = self.lookup_int(addr.version, int(addr))
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        return loc, str(net)

    def record(self, ip: str) -> Any:
        """The raw mmdb record (for debugging tools)."""
        return self._reader.get(ip)
