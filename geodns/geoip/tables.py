"""Every network of a GeoIP database with the fields steering reads, as arrays.

Built once per database file (a tree walk and a selective record decode, about 6 s
of CPU for GeoLite2-City) and kept in a cache directory as ``.npy`` files keyed by
the file's identity, so later starts, reloads and worker processes map them in well
under a second and share the pages.  Steering maps for every pool are compiled from
these tables (:mod:`geodns.select.compile`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from geodns.distinct import distinct_rows
from geodns.geoip.mmdb import EMPTY, V4_ALIAS, RecordFields, SearchTree, decode_fields

__all__ = ["ALIAS_ROW", "EMPTY_ROW", "FamilyTable", "GeoTables", "default_cache_dir"]

log = logging.getLogger("geodns.geoip")

EMPTY_ROW: Final = -1  # network without a record
ALIAS_ROW: Final = -2  # IPv6 network that is the IPv4 space (see FamilyTable.depth)
CACHE_VERSION: Final = 1
_ARRAYS: Final = ("hi", "lo", "depth", "rows")


def default_cache_dir() -> Path:
    """``$GEODNS_CACHE_DIR``, else systemd's ``$CACHE_DIRECTORY`` (``CacheDirectory=`` in
    the unit), else ``$XDG_CACHE_HOME/geodns``, else ``~/.cache/geodns``."""
    env = os.environ.get("GEODNS_CACHE_DIR")
    if env:
        return Path(env)
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":", 1)[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "geodns"


@dataclass(frozen=True, slots=True)
class FamilyTable:
    """The networks of one address family, sorted, each ending where the next starts.

    ``rows`` index :class:`RecordFields` (EMPTY_ROW: no data; ALIAS_ROW: an IPv6 block
    that holds the IPv4 space, whose IPv4 address starts at bit ``depth``).
    """

    family: int
    hi: np.ndarray  # uint64: IPv4 address or top half of an IPv6 address
    lo: np.ndarray | None  # uint64: bottom half of IPv6 addresses
    depth: np.ndarray  # uint8: prefix length
    rows: np.ndarray  # int32

    @property
    def bits(self) -> int:
        return 32 if self.family == 4 else 128

    def __len__(self) -> int:
        return len(self.rows)

    def starts(self, index: np.ndarray | None = None) -> list[int]:
        """Start addresses as Python ints (all, or those at ``index``)."""
        hi = self.hi if index is None else self.hi[index]
        if self.lo is None:
            return list(hi.tolist())
        lo = self.lo if index is None else self.lo[index]
        return [(h << 64) | low for h, low in zip(hi.tolist(), lo.tolist(), strict=True)]


@dataclass(frozen=True)
class GeoTables:
    """Both families' networks and the decoded fields of every record."""

    v4: FamilyTable
    v6: FamilyTable | None  # None for IPv4-only databases
    fields: RecordFields
    build_seconds: float = 0.0
    from_cache: bool = False
    _memo: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False,
                                                            compare=False)

    def family(self, family: int) -> FamilyTable | None:
        return self.v4 if family == 4 else self.v6

    def place_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (continent, country, subdivision) index triples of the records, and
        each record's row among them (what geo rules read; shared by every pool)."""
        found = self._memo.get("place")
        if found is None:
            f = self.fields
            keys = np.stack([np.asarray(f.continent), np.asarray(f.country),
                             np.asarray(f.subdivision)], axis=1)
            uniq, inverse = distinct_rows(keys)
            found = self._memo["place"] = (uniq, np.asarray(inverse).reshape(-1))
        return found

    def coord_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (lat, lon) pairs of the located records, and each record's row among
        them (-1: not located)."""
        found = self._memo.get("coord")
        if found is None:
            f = self.fields
            lat, lon = np.asarray(f.lat), np.asarray(f.lon)
            located = ~(np.isnan(lat) | np.isnan(lon))
            uniq, inverse = distinct_rows(np.stack([lat, lon], axis=1)[located])
            rows = np.full(len(lat), -1, dtype=np.int64)
            rows[located] = np.asarray(inverse).reshape(-1)
            found = self._memo["coord"] = (uniq, rows)
        return found

    @classmethod
    def build(cls, path: Path, meta: Any) -> GeoTables:
        """Walk the tree and decode the records of the mmdb file at ``path``."""
        t0 = time.process_time()
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            tree = SearchTree(buf, int(meta.node_count), int(meta.record_size),
                              int(meta.ip_version))
            nets = [tree.networks(4)]
            if tree.ip_version == 6:
                nets.append(tree.networks(6))
            values = np.unique(np.concatenate([n.value for n in nets]))
            values = values[values >= 0]
            fields = decode_fields(buf, values, tree.search_tree_size + 16)
            tables = []
            for n in nets:
                rows = fields.index(n.value).astype(np.int32)
                rows[n.value == EMPTY] = EMPTY_ROW
                rows[n.value == V4_ALIAS] = ALIAS_ROW
                tables.append(FamilyTable(n.family, n.hi, n.lo, n.depth, rows))
            del tree
        return cls(tables[0], tables[1] if len(tables) > 1 else None, fields,
                   time.process_time() - t0)

    # ---------------------------------------------------------------- disk cache

    @staticmethod
    def cache_key(path: Path, meta: Any) -> str | None:
        """Identity of the database file's content (None when it cannot be read)."""
        try:
            st = path.stat()
            with open(path, "rb") as f:
                head = f.read(1 << 16)
                f.seek(max(0, st.st_size - (1 << 16)))
                tail = f.read()
        except OSError:
            return None
        h = hashlib.sha256()
        h.update(f"{CACHE_VERSION}:{st.st_size}:{meta.build_epoch}:{meta.node_count}:"
                 f"{meta.record_size}:{meta.database_type}".encode())
        h.update(head)
        h.update(tail)
        return h.hexdigest()[:32]

    @classmethod
    def load_or_build(cls, path: Path, meta: Any, cache_dir: Path | None) -> GeoTables:
        """The cached tables of this database file, else built (and cached when a
        cache directory is usable; a cache problem never stops the build)."""
        key = cls.cache_key(path, meta) if cache_dir is not None else None
        where = cache_dir / f"geoip-{key}" if cache_dir is not None and key else None
        try:
            cached = where is not None and where.is_dir()
        except OSError:  # e.g. the home of another user after dropping privileges
            cached, where = False, None
        if cached and where is not None:
            try:
                return cls._load(where)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("geoip cache %s unreadable (%s); rebuilding", where, exc)
        tables = cls.build(path, meta)
        if where is not None:
            try:
                tables._save(where)
            except OSError as exc:
                log.info("geoip cache not written to %s: %s", where, exc)
        return tables

    def _save(self, where: Path) -> None:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".geoip-", dir=where.parent))
        try:
            for fam in (self.v4, self.v6):
                if fam is None:
                    continue
                for name in _ARRAYS:
                    arr = getattr(fam, name)
                    if arr is not None:
                        np.save(tmp / f"v{fam.family}_{name}.npy", arr)
            f = self.fields
            for name in ("offsets", "continent", "country", "subdivision", "lat", "lon"):
                np.save(tmp / f"fields_{name}.npy", getattr(f, name))
            (tmp / "meta.json").write_text(json.dumps({
                "codes": list(f.codes), "subdivisions": [list(s) for s in f.subdivisions],
                "v6": self.v6 is not None}))
            os.replace(tmp, where)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not where.is_dir():
                raise

    @classmethod
    def _load(cls, where: Path) -> GeoTables:
        t0 = time.process_time()
        meta = json.loads((where / "meta.json").read_text())

        def arr(name: str) -> np.ndarray:
            return np.load(where / f"{name}.npy", mmap_mode="r")

        def fam(family: int) -> FamilyTable:
            p = f"v{family}_"
            return FamilyTable(family, arr(p + "hi"), arr(p + "lo") if family == 6 else None,
                               arr(p + "depth"), arr(p + "rows"))

        fields = RecordFields(arr("fields_offsets"), arr("fields_continent"),
                              arr("fields_country"), arr("fields_subdivision"),
                              arr("fields_lat"), arr("fields_lon"), tuple(meta["codes"]),
                              tuple(tuple(s) for s in meta["subdivisions"]))
        return cls(fam(4), fam(6) if meta["v6"] else None, fields,
                   time.process_time() - t0, True)
