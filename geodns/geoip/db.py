"""An open GeoIP database: one-address lookups for explain and tools, and the bulk
tables that steering maps are compiled from.

Answers never look an address up here: every client-dependent pool is compiled into
a prefix map when the database (or the config) is loaded.  What remains per address
is for people: ``geodns explain`` and ``_explain`` TXT answers show the client's
record through geoip2's typed City model.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path
from typing import Any

import maxminddb

from geodns.config import default_geoip_database
from geodns.geoip.location import Location
from geodns.geoip.tables import GeoTables, default_cache_dir
from geodns.watch import FileKey, WatchedFile, file_key

__all__ = ["GeoDB"]


class GeoDB:
    """An mmdb file; immutable once opened (the server opens a new one on change)."""

    def __init__(self, reader: Any, path: Path, key: FileKey | None,
                 cache_dir: Path | None = None) -> None:
        self._reader = reader
        self.path = path
        self.file = WatchedFile(path, key)  # the version opened (stat'ed before the open)
        self.cache_dir = cache_dir
        meta = reader.metadata()
        self.meta = meta
        self.ip_version: int = int(meta.ip_version)
        self.database_type: str = str(meta.database_type)
        self.build_epoch: int = int(meta.build_epoch)
        self._tables: GeoTables | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path | None = None, *,
             cache_dir: Path | bool | None = True) -> GeoDB:
        """Open ``path`` (default: the packaged GeoLite2-City).

        ``cache_dir``: where compiled tables are kept (True: the default directory,
        None/False: no cache).  The stat is taken before opening, so a file replaced
        during the open is seen as changed on the next poll, not missed.
        """
        p = Path(path) if path is not None else default_geoip_database()
        key = file_key(p)
        try:
            reader = maxminddb.open_database(str(p), maxminddb.MODE_MMAP_EXT)
        except (ImportError, ValueError, AttributeError):
            reader = maxminddb.open_database(str(p), maxminddb.MODE_AUTO)
        where = default_cache_dir() if cache_dir is True else (cache_dir or None)
        return cls(reader, p, key, where)

    @property
    def key(self) -> FileKey | None:
        """The file's identity at open time (geodns.watch.file_key)."""
        return self.file.key

    def changed(self) -> bool:
        """True when the file on disk is no longer the one that was opened."""
        return self.file.changed()

    def close(self) -> None:
        self._reader.close()

    def tables(self) -> GeoTables:
        """Every network with its steering fields (built or loaded once, thread-safe)."""
        with self._lock:
            if self._tables is None:
                self._tables = GeoTables.load_or_build(self.path, self.meta, self.cache_dir)
            return self._tables

    # ------------------------------------------------------- one address (not hot)

    def lookup_int(self, family: int, addr: int) -> tuple[Location | None, int]:
        """Location of address ``addr`` (IP version ``family``) and its mmdb prefix length.

        The prefix is relative to the family (0..32 for IPv4).  Addresses the database
        cannot hold (IPv6 in an IPv4-only db) are "unknown" over the whole space: prefix 0.
        """
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
        """Location and network (CIDR text) of an address string."""
        addr = ipaddress.ip_address(ip)
        loc, plen = self.lookup_int(addr.version, int(addr))
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        return loc, str(net)

    def record(self, ip: str) -> Any:
        """The raw mmdb record (for debugging tools)."""
        return self._reader.get(ip)

    def city(self, ip: str) -> Any:
        """The record as geoip2's typed City model (None when the address has none)."""
        import geoip2.models

        record = self._reader.get(ip)
        if not isinstance(record, dict):
            return None
        return geoip2.models.City(["en"], **record)
