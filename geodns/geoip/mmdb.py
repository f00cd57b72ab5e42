"""The MaxMind DB file format, read in bulk: the whole search tree and the few record
fields steering needs, for compiling steering maps (not for per-query lookups).

maxminddb's readers answer one address at a time and decode whole records (names in
eight languages): about 65 us a record, 30 s for GeoLite2-City's 450,000 records.
Compiling needs every network once and five fields per record, so this module

* turns the search tree into two numpy arrays of child values and walks it level by
  level (one vectorised step per depth: about a second for 3.6 M nodes), and
* decodes records selectively: the fields it wants are decoded with maxminddb's own
  :class:`maxminddb.decoder.Decoder`, everything else is skipped by its size, and
  values behind data-section pointers (continents, countries, subdivisions are
  shared by many records) are decoded once per pointer target.

The format: https://maxmind.github.io/MaxMind-DB/ (search tree, data section types).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from maxminddb.decoder import Decoder

from geodns.distinct import distinct_rows

__all__ = ["EMPTY", "V4_ALIAS", "Networks", "RecordFields", "SearchTree", "decode_fields",
           "scan_records"]

EMPTY: Final = -1  # leaf without data: the address is not in the database
V4_ALIAS: Final = -2  # IPv6 leaf that is the IPv4 subtree (::/96, ::ffff:0:0/96, 6to4...)
DATA_SEPARATOR: Final = 16

# Data section types (MaxMind DB spec, "Data Section").
_POINTER, _STRING, _DOUBLE, _BYTES, _UINT16, _UINT32, _MAP = 1, 2, 3, 4, 5, 6, 7
_INT32, _UINT64, _UINT128, _ARRAY, _CONTAINER, _END, _BOOLEAN, _FLOAT = (
    8, 9, 10, 11, 12, 13, 14, 15)
_POINTER_OFFSETS: Final = (0, 2048, 526336, 0)
_FIXED_SIZE_TYPES: Final = frozenset({_STRING, _DOUBLE, _BYTES, _UINT16, _UINT32, _INT32,
                                      _UINT64, _UINT128, _FLOAT})


class FormatError(ValueError):
    """The file is not a MaxMind DB this module can read."""


@dataclass(frozen=True, slots=True)
class Networks:
    """Every network of one address family, sorted by start address.

    Networks partition the family's address space, so each one ends where the next
    begins.  ``value`` is the record's offset in the file, EMPTY, or (IPv6 only)
    V4_ALIAS; ``depth`` is the prefix length (for aliases: where the IPv4 address
    starts inside the IPv6 address).
    """

    family: int
    hi: np.ndarray  # uint64: IPv4 address, or the top 64 bits of an IPv6 address
    lo: np.ndarray | None  # uint64: the low 64 bits of IPv6 addresses (None for IPv4)
    depth: np.ndarray  # uint8
    value: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.value)

    def starts(self, index: np.ndarray | None = None) -> list[int]:
        """Start addresses as Python ints (optionally of the networks at ``index``)."""
        hi = self.hi if index is None else self.hi[index]
        if self.lo is None:
            return [int(x) for x in hi.tolist()]
        lo = self.lo if index is None else self.lo[index]
        return [(h << 64) | low for h, low in zip(hi.tolist(), lo.tolist(), strict=True)]


class SearchTree:
    """The search tree of an mmdb file as arrays: ``left[n]``, ``right[n]`` are the
    record values of node ``n`` (a node number, ``node_count`` for "no data", or a
    data pointer above it)."""

    def __init__(self, buf: Any, node_count: int, record_size: int, ip_version: int) -> None:
        if record_size not in (24, 28, 32):
            raise FormatError(f"unsupported record size {record_size}")
        node_bytes = record_size // 4
        if node_count <= 0 or len(buf) < node_count * node_bytes:
            raise FormatError("search tree larger than the file")
        raw = np.frombuffer(buf, dtype=np.uint8, count=node_count * node_bytes)
        b = raw.reshape(node_count, node_bytes).astype(np.uint32)
        if record_size == 24:
            left = (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
            right = (b[:, 3] << 16) | (b[:, 4] << 8) | b[:, 5]
        elif record_size == 28:
            left = ((b[:, 3] & 0xF0) << 20) | (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
            right = ((b[:, 3] & 0x0F) << 24) | (b[:, 4] << 16) | (b[:, 5] << 8) | b[:, 6]
        else:
            left = (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]
            right = (b[:, 4] << 24) | (b[:, 5] << 16) | (b[:, 6] << 8) | b[:, 7]
        del b
        self.left = left.astype(np.int64)
        self.right = right.astype(np.int64)
        self.node_count = node_count
        self.ip_version = ip_version
        self.search_tree_size = node_count * node_bytes
        # IPv6 databases hold IPv4 at ::/96: follow 96 left branches.
        node, depth = 0, 0
        if ip_version == 6:
            while depth < 96 and node < node_count:
                node = int(self.left[node])
                depth += 1
        self.ipv4_root = node

    def networks(self, family: int) -> Networks:
        """Every network of ``family`` (4 or 6) by a breadth-first walk, one numpy step
        per depth.  IPv6 walks stop at the IPv4 subtree wherever it is linked in."""
        nc = self.node_count
        if family == 4:
            root, bits = self.ipv4_root, 32
        else:
            if self.ip_version == 4:
                raise FormatError("an IPv4-only database has no IPv6 networks")
            root, bits = 0, 128
        out_hi: list[np.ndarray] = []
        out_lo: list[np.ndarray] = []
        out_depth: list[np.ndarray] = []
        out_value: list[np.ndarray] = []
        nodes = np.array([root], dtype=np.int64)
        hi = np.zeros(1, dtype=np.uint64)
        lo = np.zeros(1, dtype=np.uint64)
        if root >= nc:  # the whole space is one record (or empty)
            nodes = np.empty(0, dtype=np.int64)
            out_hi.append(hi)
            out_lo.append(lo)
            out_depth.append(np.zeros(1, dtype=np.uint8))
            out_value.append(np.array([EMPTY if root == nc else root], dtype=np.int64))
        v4_root = self.ipv4_root if family == 6 and self.ip_version == 6 else -1
        for depth in range(bits):
            if len(nodes) == 0:
                break
            children = np.concatenate((self.left[nodes], self.right[nodes]))
            if family == 4 or depth < 64:
                bit = np.uint64(1 << ((bits - 1 - depth) if family == 4 else (63 - depth)))
                c_hi = np.concatenate((hi, hi | bit))
                c_lo = np.concatenate((lo, lo))
            else:
                bit = np.uint64(1 << (127 - depth))
                c_hi = np.concatenate((hi, hi))
                c_lo = np.concatenate((lo, lo | bit))
            leaf = children >= nc
            alias = children == v4_root
            done = leaf | alias
            if done.any():
                vals = children[done]
                vals = np.where(vals == nc, EMPTY, vals)
                vals = np.where(children[done] == v4_root, V4_ALIAS, vals)
                out_hi.append(c_hi[done])
                out_lo.append(c_lo[done])
                out_depth.append(np.full(int(done.sum()), depth + 1, dtype=np.uint8))
                out_value.append(vals)
            more = ~done
            nodes, hi, lo = children[more], c_hi[more], c_lo[more]
        if len(nodes):
            raise FormatError("search tree deeper than the address size")
        all_hi = np.concatenate(out_hi)
        all_lo = np.concatenate(out_lo)
        value = np.concatenate(out_value)
        value = np.where(value >= nc, value - nc + self.search_tree_size, value)
        depth_arr = np.concatenate(out_depth)
        order = np.argsort(all_hi, kind="stable") if family == 4 else np.lexsort((all_lo,
                                                                                  all_hi))
        return Networks(family, all_hi[order], all_lo[order] if family == 6 else None,
                        depth_arr[order], value[order])


@dataclass(frozen=True, slots=True)
class RecordFields:
    """What steering reads from each distinct record, in parallel arrays.

    ``offsets`` are sorted record offsets; the other arrays are indexed like them.
    Codes are indices into ``codes`` (0 = none), subdivision tuples into ``subdivisions``.
    """

    offsets: np.ndarray  # int64
    continent: np.ndarray  # int32 index into codes
    country: np.ndarray  # int32 index into codes (country, else registered country)
    subdivision: np.ndarray  # int32 index into subdivisions
    lat: np.ndarray  # float64, NaN when missing
    lon: np.ndarray  # float64
    codes: tuple[str | None, ...]
    subdivisions: tuple[tuple[str, ...], ...]

    def index(self, values: np.ndarray) -> np.ndarray:
        """Row of each record offset in ``values`` (EMPTY/V4_ALIAS give -1)."""
        pos = np.searchsorted(self.offsets, values)
        pos = np.minimum(pos, max(len(self.offsets) - 1, 0))
        found = (values >= 0) & (len(self.offsets) > 0)
        if len(self.offsets):
            found &= self.offsets[pos] == values
        return np.where(found, pos, -1)


class _Interner:
    def __init__(self) -> None:
        self.codes: dict[str | None, int] = {None: 0}
        self.subs: dict[tuple[str, ...], int] = {(): 0}

    def code(self, text: Any) -> int:
        key = text.upper() if isinstance(text, str) else None
        found = self.codes.get(key)
        if found is None:
            found = self.codes[key] = len(self.codes)
        return found

    def sub(self, value: tuple[str, ...]) -> int:
        found = self.subs.get(value)
        if found is None:
            found = self.subs[value] = len(self.subs)
        return found


class _FieldReader:
    """Reads the wanted fields of one record at a time (see the module docstring)."""

    def __init__(self, buf: Any, pointer_base: int) -> None:
        self.buf = buf
        self.base = pointer_base
        self.decoder = Decoder(buf, pointer_base)
        self.memo: dict[int, Any] = {}  # pointer target -> decoded value (shared parts)
        self.keys: dict[int, str] = {}  # offset -> map key (keys are mostly pointers)

    def _ctrl(self, off: int) -> tuple[int, int, int]:
        """(type, size, offset of the payload) of the value at ``off``; pointers give
        (POINTER, target, offset past the pointer)."""
        buf = self.buf
        ctrl = buf[off]
        off += 1
        typ = ctrl >> 5
        if typ == _POINTER:
            psize = ((ctrl >> 3) & 3) + 1
            raw = int.from_bytes(buf[off:off + psize], "big")
            if psize < 4:
                raw |= (ctrl & 7) << (8 * psize)
            return _POINTER, raw + _POINTER_OFFSETS[psize - 1] + self.base, off + psize
        if typ == 0:
            typ = 7 + buf[off]
            off += 1
        size = ctrl & 0x1F
        if size >= 29:
            n = size - 28
            extra = int.from_bytes(buf[off:off + n], "big")
            off += n
            size = 29 + extra if n == 1 else 285 + extra if n == 2 else 65821 + extra
        return typ, size, off

    def skip(self, off: int) -> int:
        """Offset just past the value at ``off``, without decoding it."""
        buf = self.buf
        c = buf[off]
        typ = c >> 5
        if typ == _POINTER:
            return off + 2 + ((c >> 3) & 3)
        if typ == _MAP and c & 0x1F < 29:  # small maps of pointers and short scalars
            off += 1
            for _ in range(2 * (c & 0x1F)):
                c = buf[off]
                typ = c >> 5
                if typ == _POINTER:
                    off += 2 + ((c >> 3) & 3)
                elif typ in _FIXED_SIZE_TYPES and c & 0x1F < 29:
                    off += 1 + (c & 0x1F)
                else:
                    off = self._skip(off)
            return off
        return self._skip(off)

    def _skip(self, off: int) -> int:
        typ, size, off = self._ctrl(off)
        if typ == _POINTER:
            return off
        if typ in _FIXED_SIZE_TYPES:
            return off + size
        if typ == _MAP:
            for _ in range(2 * size):
                off = self._skip(off)
            return off
        if typ == _ARRAY:
            for _ in range(size):
                off = self._skip(off)
            return off
        if typ in (_BOOLEAN, _END):
            return off
        raise FormatError(f"unknown data type {typ}")

    def value(self, off: int) -> tuple[Any, int]:
        """Decode the value at ``off`` (through the memo when it is a pointer)."""
        typ, target, after = self._ctrl(off)
        if typ == _POINTER:
            return self.shared(target), after
        return self.decoder.decode(off)

    def shared(self, target: int) -> Any:
        """The value at pointer target ``target``, decoded once."""
        found = self.memo.get(target, _MISS)
        if found is _MISS:
            found = self.memo[target] = self.decoder.decode(target)[0]
        return found

    def key_at(self, target: int) -> str:
        """The map key at pointer target ``target``, decoded once."""
        found = self.keys.get(target)
        if found is None:
            found = self.keys[target] = str(self.decoder.decode(target)[0])
        return found

    def key(self, off: int) -> tuple[str, int]:
        typ, target, after = self._ctrl(off)
        if typ == _POINTER:
            return self.key_at(target), after
        if typ != _STRING:
            raise FormatError("map key is not a string")
        return bytes(self.buf[after:after + target]).decode("utf-8"), after + target

    def fields(self, off: int, want: frozenset[str]) -> dict[str, Any]:
        """The top-level keys in ``want`` of the record map at ``off``.

        The common shapes (keys and shared values behind pointers, small inline maps)
        are handled inline here: this loop runs once per record of the database."""
        buf = self.buf
        ctrl = buf[off]
        if ctrl >> 5 != _MAP or ctrl & 0x1F >= 29:
            return self._fields_slow(off, want)
        size = ctrl & 0x1F
        off += 1
        base = self.base
        keys = self.keys
        memo = self.memo
        out: dict[str, Any] = {}
        for _ in range(size):
            c = buf[off]
            if c >> 5 == _POINTER:
                ps = (c >> 3) & 3
                if ps == 0:
                    target = (((c & 7) << 8) | buf[off + 1]) + base
                else:
                    raw = int.from_bytes(buf[off + 1:off + 2 + ps], "big")
                    if ps < 3:
                        raw |= (c & 7) << (8 * (ps + 1))
                    target = raw + _POINTER_OFFSETS[ps] + base
                off += 2 + ps
                k = keys.get(target)
                if k is None:
                    k = keys[target] = str(self.decoder.decode(target)[0])
            else:
                k, off = self.key(off)
            c = buf[off]
            if c >> 5 == _POINTER:
                ps = (c >> 3) & 3
                if k not in want:
                    off += 2 + ps
                    continue
                if ps == 0:
                    target = (((c & 7) << 8) | buf[off + 1]) + base
                else:
                    raw = int.from_bytes(buf[off + 1:off + 2 + ps], "big")
                    if ps < 3:
                        raw |= (c & 7) << (8 * (ps + 1))
                    target = raw + _POINTER_OFFSETS[ps] + base
                off += 2 + ps
                found = memo.get(target, _MISS)
                if found is _MISS:
                    found = memo[target] = self.decoder.decode(target)[0]
                out[k] = found
            elif k == "location":
                out[k], off = self.latlon(off)
            elif k in want:
                out[k], off = self.inline(off)
            else:
                off = self.skip(off)
        return out

    def latlon(self, off: int) -> tuple[dict[str, float], int]:
        """The latitude and longitude of an inline location map (the rest skipped)."""
        buf = self.buf
        c = buf[off]
        if c >> 5 != _MAP or c & 0x1F >= 29:
            return self.inline(off)
        out: dict[str, float] = {}
        off += 1
        keys = self.keys
        base = self.base
        for _ in range(c & 0x1F):
            c = buf[off]
            if c >> 5 == _POINTER and (c >> 3) & 3 == 0:
                target = (((c & 7) << 8) | buf[off + 1]) + base
                off += 2
                k = keys.get(target)
                if k is None:
                    k = keys[target] = str(self.decoder.decode(target)[0])
            else:
                k, off = self.key(off)
            c = buf[off]
            if k == "latitude" or k == "longitude":
                if c == 0x68:  # an inline double
                    out[k] = _DOUBLE_AT(buf, off + 1)[0]
                    off += 9
                else:  # shared through a pointer, or another encoding
                    out[k], off = self.value(off)
            elif c >> 5 == _POINTER:
                off += 2 + ((c >> 3) & 3)
            elif c >> 5 in (_UINT16, _UINT32, _STRING) and c & 0x1F < 29:
                off += 1 + (c & 0x1F)
            else:
                off = self.skip(off)
        return out, off

    def inline(self, off: int) -> tuple[Any, int]:
        """Decode an inline value whose parts may be shared: containers are walked here
        so that pointers inside them go through the memo."""
        buf = self.buf
        c = buf[off]
        typ = c >> 5
        size = c & 0x1F
        if typ == _MAP and size < 29:
            off += 1
            out: dict[str, Any] = {}
            for _ in range(size):
                k, off = self.key(off)
                out[k], off = self.inline(off)
            return out, off
        if typ == 0 and buf[off + 1] == _ARRAY - 7 and size < 29:
            off += 2
            items = []
            for _ in range(size):
                item, off = self.inline(off)
                items.append(item)
            return items, off
        if typ == _DOUBLE and size == 8:
            return _DOUBLE_AT(buf, off + 1)[0], off + 9
        return self.value(off)

    def _fields_slow(self, off: int, want: frozenset[str]) -> dict[str, Any]:
        typ, size, off = self._ctrl(off)
        if typ == _POINTER:  # a record that is itself a pointer to a map
            typ, size, off = self._ctrl(size)
        if typ != _MAP:
            return {}
        out: dict[str, Any] = {}
        for _ in range(size):
            k, off = self.key(off)
            if k in want:
                out[k], off = self.value(off)
            else:
                off = self.skip(off)
        return out


_MISS: Final = object()
_DOUBLE_AT: Final = struct.Struct(">d").unpack_from
_WANTED: Final = frozenset({"continent", "country", "registered_country", "subdivisions",
                            "location"})


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def _place(rec: dict[str, Any], intern: _Interner) -> tuple[int, int, int]:
    """(continent, country, subdivisions) indices of a record's decoded fields."""
    continent = intern.code(_get(rec.get("continent"), "code"))
    cc = _get(rec.get("country"), "iso_code") or _get(rec.get("registered_country"),
                                                       "iso_code")
    subdivision = 0
    subs = rec.get("subdivisions")
    if isinstance(cc, str) and isinstance(subs, list):
        names = tuple(f"{cc}-{s['iso_code']}".upper() for s in subs
                      if isinstance(s, dict) and isinstance(s.get("iso_code"), str))
        subdivision = intern.sub(names)
    return continent, intern.code(cc), subdivision


def decode_fields(buf: Any, offsets: np.ndarray, pointer_base: int) -> RecordFields:
    """Decode continent, country, subdivisions and coordinates of every record at
    ``offsets`` (unique, sorted).

    Records of the common shape are scanned all at once (:func:`scan_records`); their
    shared values are decoded once per distinct combination.  The rest are read one by
    one with the selective reader.  Both give the same fields."""
    reader = _FieldReader(buf, pointer_base)
    n = len(offsets)
    continent = np.zeros(n, dtype=np.int32)
    country = np.zeros(n, dtype=np.int32)
    subdivision = np.zeros(n, dtype=np.int32)
    intern = _Interner()
    scan = scan_records(buf, offsets, pointer_base, reader)
    lat, lon = scan.lat, scan.lon
    fast = np.flatnonzero(scan.ok)
    if len(fast):
        combos, inverse = distinct_rows(scan.targets[fast])
        places = np.zeros((len(combos), 3), dtype=np.int32)
        for j, row in enumerate(combos.tolist()):
            rec = {name: reader.shared(t) for name, t in zip(SCANNED, row, strict=True)
                   if t >= 0}
            places[j] = _place(rec, intern)
        got = places[np.asarray(inverse).reshape(-1)]
        continent[fast], country[fast], subdivision[fast] = got[:, 0], got[:, 1], got[:, 2]
    for i in np.flatnonzero(~scan.ok).tolist():
        rec = reader.fields(int(offsets[i]), _WANTED)
        if not rec:
            continue
        continent[i], country[i], subdivision[i] = _place(rec, intern)
        loc = rec.get("location")
        la, lo = _get(loc, "latitude"), _get(loc, "longitude")
        if isinstance(la, int | float) and isinstance(lo, int | float):
            lat[i], lon[i] = float(la), float(lo)
    codes: list[str | None] = [None] * len(intern.codes)
    for code, idx in intern.codes.items():
        codes[idx] = code
    subs_list: list[tuple[str, ...]] = [()] * len(intern.subs)
    for sub, idx in intern.subs.items():
        subs_list[idx] = sub
    return RecordFields(offsets, continent, country, subdivision, lat, lon, tuple(codes),
                        tuple(subs_list))


# ------------------------------------------------------------------ scanning in bulk
#
# A record is a map.  In GeoIP2/GeoLite2 City databases its keys are pointers (or
# short strings), the place fields (continent, country, ...) are pointers to values
# many records share, and ``location`` is a small map (inline or shared) whose
# latitude and longitude are doubles (inline or shared).  scan_records reads that
# shape for every record at once with numpy: one vectorised step per map entry
# instead of a Python loop per record.  A record of any other shape is marked not ok
# and read by _FieldReader (0.9 % of GeoLite2-City's records).

SCANNED: Final = ("continent", "country", "registered_country", "subdivisions")
_LOCATION: Final = len(SCANNED)
_LATITUDE, _LONGITUDE = _LOCATION + 1, _LOCATION + 2
_KEY_IDS: Final = {name: i for i, name in enumerate(
    (*SCANNED, "location", "latitude", "longitude"))}
_OTHER: Final = -1
_SKIP_DEPTH: Final = 3  # containers nested deeper than this are left to _FieldReader


@dataclass(frozen=True, slots=True)
class Scan:
    """What :func:`scan_records` read: per record, ``ok`` (the shape was understood),
    the pointer targets of the SCANNED fields (-1: absent), and the coordinates (NaN
    when absent, and for records that are not ok)."""

    ok: np.ndarray  # bool
    targets: np.ndarray  # int64, shape (n, len(SCANNED))
    lat: np.ndarray  # float64, NaN when absent
    lon: np.ndarray


class _Bytes:
    """The file as a numpy byte array.  Reads past its end repeat its last byte: a
    record that runs past the end is caught by its end offset, not by an IndexError."""

    def __init__(self, buf: Any) -> None:
        self.arr = np.frombuffer(buf, dtype=np.uint8)
        self.size = len(self.arr)

    def at(self, pos: np.ndarray) -> np.ndarray:
        return self.arr.take(np.minimum(pos, self.size - 1)).astype(np.int64)

    def pointer(self, pos: np.ndarray, ctrl: np.ndarray, base: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
        """Targets and next offsets of the pointers at ``pos`` (control bytes ``ctrl``)."""
        ps = (ctrl >> 3) & 3
        b1, b2, b3, b4 = (self.at(pos + k) for k in (1, 2, 3, 4))
        top = ctrl & 7
        target = np.select(
            [ps == 0, ps == 1, ps == 2],
            [(top << 8) | b1,
             ((top << 16) | (b1 << 8) | b2) + _POINTER_OFFSETS[1],
             ((top << 24) | (b1 << 16) | (b2 << 8) | b3) + _POINTER_OFFSETS[2]],
            (b1 << 24) | (b2 << 16) | (b3 << 8) | b4)
        return target + base, pos + 2 + ps

    def doubles(self, pos: np.ndarray) -> np.ndarray:
        """The big-endian doubles whose 8 bytes start at ``pos``."""
        idx = np.minimum(pos[:, None] + np.arange(8), self.size - 1)
        return np.ascontiguousarray(self.arr.take(idx)).view(">f8").reshape(-1)

    def skip(self, pos: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Offsets past the values at ``pos``, and which of them could be skipped
        (pointers, scalars, and maps/arrays nested at most ``depth`` deep)."""
        c = self.at(pos)
        typ, size = c >> 5, c & 0x1F
        ext = np.where(typ == 0, self.at(pos + 1) + 7, typ)
        nxt = pos.copy()
        ok = np.zeros(len(pos), dtype=bool)
        m = typ == _POINTER
        nxt[m] = pos[m] + 2 + ((c[m] >> 3) & 3)
        ok |= m
        head = np.where(typ == 0, 2, 1)  # control byte(s)
        scalar = np.isin(ext, list(_FIXED_SIZE_TYPES)) & ((typ != 0) | (ext > _MAP))
        m = scalar & (size < 29)
        nxt[m] = pos[m] + head[m] + size[m]
        ok |= m
        m = scalar & (size == 29)
        nxt[m] = pos[m] + head[m] + 1 + 29 + self.at(pos[m] + head[m])
        ok |= m
        m = (typ == 0) & (ext == _BOOLEAN)
        nxt[m] = pos[m] + 2
        ok |= m
        if depth > 0:
            for kind, entries in ((_MAP, 2), (_ARRAY, 1)):
                m = np.flatnonzero((ext == kind) & (size < 29) & ((typ == 0) == (kind > _MAP)))
                if len(m) == 0:
                    continue
                p, good = pos[m] + head[m], np.ones(len(m), dtype=bool)
                count = size[m] * entries
                for j in range(int(count.max(initial=0))):
                    live = np.flatnonzero(good & (j < count))
                    if len(live) == 0:
                        break
                    p[live], fine = self.skip(p[live], depth - 1)
                    good[live] &= fine
                nxt[m] = p
                ok[m] = good
        return nxt, ok


class _PerTarget:
    """``compute(target)`` for arrays of pointer targets, computed once per distinct
    target (a few hundred distinct keys and shared numbers serve ~a million uses)."""

    def __init__(self, compute: Callable[[int], float], dtype: type) -> None:
        self.compute = compute
        self.dtype = dtype
        self.keys = np.empty(0, dtype=np.int64)
        self.values: np.ndarray = np.empty(0, dtype=dtype)

    def _find(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.minimum(np.searchsorted(self.keys, targets), max(len(self.keys) - 1, 0))
        hit = self.keys[idx] == targets if len(self.keys) else np.zeros(len(targets), bool)
        return idx, hit

    def __call__(self, targets: np.ndarray) -> np.ndarray:
        idx, hit = self._find(targets)
        if not hit.all():
            new = np.unique(targets[~hit])
            values: np.ndarray = np.array([self.compute(t) for t in new.tolist()],
                                          dtype=self.dtype)
            keys = np.concatenate((self.keys, new))
            order = np.argsort(keys)
            self.keys = keys[order]
            self.values = np.concatenate((self.values, values))[order]
            idx, hit = self._find(targets)
        return self.values[idx]


class _Scanner:
    """The vectorised reads of scan_records."""

    def __init__(self, buf: Any, reader: _FieldReader) -> None:
        self.data = _Bytes(buf)
        self.reader = reader
        self.base = reader.base
        self.key_ids = _PerTarget(lambda t: _KEY_IDS.get(reader.key_at(t), _OTHER), np.int64)
        self.numbers = _PerTarget(lambda t: _number(reader.shared(t)), np.float64)
        self.inline_keys = [(np.frombuffer(name.encode(), dtype=np.uint8), key_id)
                            for name, key_id in _KEY_IDS.items()]

    def keys(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map keys at ``pos``: their ids in _KEY_IDS (_OTHER for any other key), the
        offsets of their values, and which keys were readable (pointers or short
        strings)."""
        data = self.data
        c = data.at(pos)
        typ, size = c >> 5, c & 0x1F
        ids = np.full(len(pos), _OTHER, dtype=np.int64)
        nxt = pos + 1 + size
        ptr = np.flatnonzero(typ == _POINTER)
        if len(ptr):
            target, nxt[ptr] = data.pointer(pos[ptr], c[ptr], self.base)
            ids[ptr] = self.key_ids(target)
        inline = (typ == _STRING) & (size < 29)
        if inline.any():
            for raw, key_id in self.inline_keys:
                m = np.flatnonzero(inline & (size == len(raw)))
                if len(m):
                    idx = np.minimum(pos[m, None] + 1 + np.arange(len(raw)), data.size - 1)
                    ids[m[(data.arr.take(idx) == raw).all(axis=1)]] = key_id
        return ids, nxt, (typ == _POINTER) | inline

    def records(self, offsets: np.ndarray) -> Scan:
        data = self.data
        n = len(offsets)
        pos = np.asarray(offsets, dtype=np.int64) + 1
        c = data.at(pos - 1)
        entries = c & 0x1F
        ok = (c >> 5 == _MAP) & (entries < 29)
        targets = np.full((n, len(SCANNED)), -1, dtype=np.int64)
        lat = np.full(n, math.nan)
        lon = np.full(n, math.nan)
        for j in range(int(entries[ok].max(initial=0))):
            live = np.flatnonzero(ok & (j < entries))
            ids, at, good = self.keys(pos[live])
            vc = data.at(at)
            nxt = at.copy()
            is_ptr = vc >> 5 == _POINTER
            # the shared place fields: pointers only
            m = np.flatnonzero((ids >= 0) & (ids < _LOCATION))
            good[m[~is_ptr[m]]] = False
            m = m[is_ptr[m]]
            targets[live[m], ids[m]], nxt[m] = data.pointer(at[m], vc[m], self.base)
            # location: an inline map, or a pointer to one (a repeated key: the last)
            m = np.flatnonzero(ids == _LOCATION)
            lat[live[m]] = lon[live[m]] = math.nan
            m = np.flatnonzero((ids == _LOCATION) & ~is_ptr)
            nxt[m], fine = self.location(at[m], lat, lon, live[m])
            good[m] &= fine
            m = np.flatnonzero((ids == _LOCATION) & is_ptr)
            if len(m):
                target, nxt[m] = data.pointer(at[m], vc[m], self.base)
                shared, inverse = np.unique(target, return_inverse=True)
                s_lat, s_lon = np.full(len(shared), math.nan), np.full(len(shared), math.nan)
                _, fine = self.location(shared, s_lat, s_lon, np.arange(len(shared)))
                inverse = np.asarray(inverse).reshape(-1)
                lat[live[m]], lon[live[m]] = s_lat[inverse], s_lon[inverse]
                good[m] &= fine[inverse]
            # anything else is skipped
            m = np.flatnonzero(ids == _OTHER)
            nxt[m], fine = data.skip(at[m], _SKIP_DEPTH)
            good[m] &= fine
            pos[live] = nxt
            ok[live] &= good
        ok &= pos <= data.size
        half = np.isnan(lat) | np.isnan(lon) | ~ok  # located: both coordinates, read
        lat[half] = lon[half] = math.nan
        return Scan(ok, targets, lat, lon)

    def location(self, pos: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Read the ``location`` maps at ``pos`` into ``lat``/``lon`` at ``rows``
        (inline doubles, or numbers behind pointers); the offsets past them, and which
        were of that shape."""
        data = self.data
        c = data.at(pos)
        entries = c & 0x1F
        good = (c >> 5 == _MAP) & (entries < 29)
        p = pos + 1
        for j in range(int(entries[good].max(initial=0))):
            live = np.flatnonzero(good & (j < entries))
            ids, at, fine = self.keys(p[live])
            nxt = at.copy()
            vc = data.at(at)
            for key_id, out in ((_LATITUDE, lat), (_LONGITUDE, lon)):
                m = np.flatnonzero(ids == key_id)
                double = vc[m] == (_DOUBLE << 5 | 8)
                d = m[double]
                out[rows[live[d]]] = data.doubles(at[d] + 1)
                nxt[d] = at[d] + 9
                ptr = m[vc[m] >> 5 == _POINTER]
                target, nxt[ptr] = data.pointer(at[ptr], vc[ptr], self.base)
                out[rows[live[ptr]]] = self.numbers(target)
                fine[m[~double & (vc[m] >> 5 != _POINTER)]] = False
            m = np.flatnonzero((ids != _LATITUDE) & (ids != _LONGITUDE))
            nxt[m], skipped = data.skip(at[m], _SKIP_DEPTH - 1)
            fine[m] &= skipped
            p[live] = nxt
            good[live] &= fine
        return p, good


def _number(value: Any) -> float:
    """A coordinate as decode_fields' record path reads it (NaN: not a number)."""
    return float(value) if isinstance(value, int | float) else math.nan


def scan_records(buf: Any, offsets: np.ndarray, pointer_base: int,
                 reader: _FieldReader) -> Scan:
    """Read the records at ``offsets`` in bulk (see the comment above)."""
    return _Scanner(buf, reader).records(offsets)
