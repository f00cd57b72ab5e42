"""Record fields read in bulk (``decode_fields``): the vectorised scan of the common
record shape and the one-record reader behind it must read every record the way the
per-query path (maxminddb's decoder, then ``Location.from_record``) does, whatever
mix of inline values, pointers, key encodings and nesting the data section holds."""

from __future__ import annotations

import math
import mmap
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from maxminddb.decoder import Decoder

from geodns.geoip.db import GeoDB
from geodns.geoip.location import Location
from geodns.geoip.mmdb import (
    _POINTER_OFFSETS,
    RecordFields,
    SearchTree,
    _FieldReader,
    decode_fields,
    scan_records,
)
from tests.select.mmdb_writer import _ctrl, encode


@dataclass(frozen=True)
class Ref:
    """A value stored once in the shared pool and reached by a pointer of ``size``."""

    index: int
    size: int = 0


@dataclass(frozen=True)
class Map:
    """A map whose keys and values may be Refs (``encode`` only writes inline maps)."""

    items: tuple[tuple[Any, Any], ...]


def pointer(target: int, size: int) -> bytes:
    """A data-section pointer to ``target`` (``size`` 0-3 when it fits, else larger)."""
    while size < 3 and not _POINTER_OFFSETS[size] <= target < _POINTER_OFFSETS[size] + (
            8 << (8 * (size + 1))):
        size += 1
    raw = target - _POINTER_OFFSETS[size]
    if size == 3:
        return bytes([0x20 | 3 << 3]) + raw.to_bytes(4, "big")
    return bytes([0x20 | size << 3 | raw >> (8 * (size + 1))]) + \
        (raw & ((1 << (8 * (size + 1))) - 1)).to_bytes(size + 1, "big")


def build(pool: list[Any], records: list[Any], pad: int = 0) -> tuple[bytes, list[int]]:
    """A data section: ``pad`` filler bytes, the pool (its Maps, which may point at its
    other entries, last), then the records; and the records' offsets."""
    data = bytearray(_ctrl(4, 0) * pad)  # empty byte strings: valid, never referenced
    where: dict[int, int] = {}

    def enc(v: Any) -> bytes:
        if isinstance(v, Ref):
            return pointer(where[v.index], v.size)
        if isinstance(v, Map):
            return _ctrl(7, len(v.items)) + b"".join(enc(k) + enc(x) for k, x in v.items)
        if isinstance(v, list):
            return _ctrl(11, len(v)) + b"".join(enc(x) for x in v)
        return encode(v)

    for last in (False, True):
        for i, value in enumerate(pool):
            if isinstance(value, Map) == last:
                where[i] = len(data)
                data += enc(value)
    offsets = []
    for rec in records:
        offsets.append(len(data))
        data += enc(rec)
    return bytes(data), offsets


def read(data: bytes, offsets: list[int]) -> RecordFields:
    return decode_fields(data, np.array(offsets, dtype=np.int64), 0)


def expected(data: bytes, off: int) -> tuple[object, ...]:
    """What the per-query path makes of the record at ``off``."""
    loc = Location.from_record(Decoder(data, 0).decode(off)[0])
    if loc is None:
        return (None, None, (), None, None)
    return (loc.continent, loc.country, loc.subdivisions if loc.country else (),
            loc.lat, loc.lon)


def got(fields: RecordFields, i: int) -> tuple[object, ...]:
    lat, lon = float(fields.lat[i]), float(fields.lon[i])
    return (fields.codes[fields.continent[i]], fields.codes[fields.country[i]],
            fields.subdivisions[fields.subdivision[i]],
            None if math.isnan(lat) else lat, None if math.isnan(lon) else lon)


# ----------------------------------------------------------------- random records

KEYS = ("continent", "country", "registered_country", "subdivisions", "location",
        "city", "postal", "traits")
codes = st.sampled_from(["EU", "NA", "de", "US", "FR", "jp"])
scalars = st.one_of(
    st.integers(0, 2**16 - 1), st.integers(2**16, 2**32 - 1), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),  # past 29 bytes: the long-size encoding
    st.text(min_size=300, max_size=310),  # past 285: left to the one-record reader
)
nested = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3),
    st.dictionaries(st.sampled_from(["names", "en", "code", "x"]), kids, max_size=3)),
    max_leaves=8)


@st.composite
def databases(draw: st.DrawFn) -> tuple[list[Any], list[Any], int]:
    pool: list[Any] = [*KEYS, "latitude", "longitude", "iso_code", "code"]
    key_ref = {k: i for i, k in enumerate(pool)}

    def share(value: Any) -> Ref:
        pool.append(value)
        return Ref(len(pool) - 1, draw(st.integers(0, 3)))

    def key(name: str) -> Any:
        return Ref(key_ref[name], draw(st.integers(0, 3))) if draw(st.booleans()) else name

    def maybe_shared(value: Any) -> Any:
        return share(value) if draw(st.booleans()) else value

    def coordinate() -> Any:
        value = draw(st.one_of(st.floats(-90, 90), st.integers(0, 90)))
        return maybe_shared(value)

    records: list[Any] = []
    for _ in range(draw(st.integers(1, 12))):
        items: list[tuple[Any, Any]] = []
        for name in draw(st.lists(st.sampled_from(KEYS), max_size=8)):
            if name == "continent":
                value: Any = maybe_shared({"code": draw(codes), "geoname_id": 6255148})
            elif name in ("country", "registered_country"):
                value = maybe_shared({"iso_code": draw(codes), "names": {"en": "x"}})
            elif name == "subdivisions":
                value = maybe_shared([{"iso_code": draw(codes)}
                                      for _ in range(draw(st.integers(0, 2)))])
            elif name == "location":
                loc: list[tuple[Any, Any]] = []
                for part in draw(st.lists(st.sampled_from(
                        ["latitude", "longitude", "accuracy_radius", "time_zone"]),
                        max_size=5)):
                    loc.append((key(part) if part in key_ref else part,
                                coordinate() if part in ("latitude", "longitude")
                                else draw(scalars)))
                value = Map(tuple(loc))
                if draw(st.booleans()):  # the whole location map shared
                    pool.append(value)
                    value = Ref(len(pool) - 1, 3)
            else:
                value = maybe_shared(draw(nested))
            items.append((key(name), value))
        records.append(Map(tuple(items)))
    return pool, records, draw(st.sampled_from([0, 0, 2048, 526336]))


@given(databases())
@settings(max_examples=150, deadline=None)
def test_bulk_read_agrees_with_the_per_query_reader(
        db: tuple[list[Any], list[Any], int]) -> None:
    pool, records, pad = db
    data, offsets = build(pool, records, pad)
    fields = read(data, offsets)
    for i, off in enumerate(offsets):
        assert got(fields, i) == expected(data, off), (i, records[i])


# ----------------------------------------------------------------- shapes, by hand

POOL: list[Any] = ["continent", "country", "location", "latitude", "longitude", "city",
                   {"code": "EU"}, {"iso_code": "DE"}, 52.5, {"names": {"en": "Berlin"}},
                   "x" * 300]
K = {name: Ref(i) for i, name in enumerate(POOL[:6])}
EU, DE, LAT, BERLIN, LONG = (Ref(i) for i in range(6, 11))


def scanned(records: list[Any], pad: int = 0) -> tuple[list[bool], RecordFields,
                                                       bytes, list[int]]:
    data, offsets = build(POOL, records, pad)
    scan = scan_records(data, np.array(offsets, dtype=np.int64), 0, _FieldReader(data, 0))
    return scan.ok.tolist(), read(data, offsets), data, offsets


def test_the_common_shape_is_read_in_bulk() -> None:
    """GeoLite2-City's shape (keys and shared values behind pointers, an inline
    location with inline doubles, other values skipped unread), and its variants:
    inline keys, shared coordinates, a shared location map, far pointers."""
    location = Map(((K["latitude"], 52.5), (K["longitude"], 13.4),
                    ("accuracy_radius", 20), ("time_zone", "Europe/Berlin")))
    records = [
        Map(((K["city"], BERLIN), (K["continent"], EU), (K["country"], DE),
             (K["location"], location), ("postal", {"code": "10115"}))),
        Map((("continent", EU), ("country", DE), ("city", {"names": {"en": "B", "de": "B"}}),
             ("location", Map((("latitude", LAT), ("longitude", 13.4)))))),
        Map((("location", Ref(len(POOL))), ("country", DE))),
    ]
    pool_with_map = [*POOL, location]
    for pad in (0, 2048, 526336):  # pointers of every size
        data, offsets = build(pool_with_map, records, pad)
        scan = scan_records(data, np.array(offsets, dtype=np.int64), 0,
                            _FieldReader(data, 0))
        assert scan.ok.tolist() == [True, True, True], pad
        fields = read(data, offsets)
        assert [got(fields, i) for i in range(3)] == [
            ("EU", "DE", (), 52.5, 13.4), ("EU", "DE", (), 52.5, 13.4),
            (None, "DE", (), 52.5, 13.4)]


def test_other_shapes_are_read_one_by_one_with_the_same_result() -> None:
    records = [
        Map((("continent", {"code": "EU"}), ("country", DE))),  # an inline place field
        Map((("continent", EU), ("traits", LONG), ("x", "y" * 300))),  # a long string
        Map((("country", DE), ("location", Map((("latitude", 1), ("longitude", 2)))))),
        Ref(6),  # a record that is a pointer
    ]
    ok, fields, data, offsets = scanned(records)
    assert ok == [False, False, False, False]
    assert [got(fields, i) for i in range(4)] == [expected(data, o) for o in offsets]
    assert got(fields, 2) == (None, "DE", (), 1.0, 2.0)


def test_real_database_is_read_in_bulk_and_agrees(real_db: GeoDB) -> None:
    """Nearly every GeoLite2-City record takes the bulk path, and a sample of all of
    them reads as the per-query path reads it."""
    with open(real_db.path, "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        meta = real_db.meta
        tree = SearchTree(buf, int(meta.node_count), int(meta.record_size),
                          int(meta.ip_version))
        values = np.unique(np.concatenate([tree.networks(4).value, tree.networks(6).value]))
        values = values[values >= 0]
        base = tree.search_tree_size + 16
        scan = scan_records(buf, values, base, _FieldReader(buf, base))
        assert scan.ok.mean() > 0.98
        sample = np.sort(np.array(random.Random(5).sample(range(len(values)), 3000)))
        fields = decode_fields(buf, values[sample], base)
        decoder = Decoder(buf, base)
        for i, off in enumerate(values[sample].tolist()):
            loc = Location.from_record(decoder.decode(off)[0])
            want = (None, None, (), None, None) if loc is None else (
                loc.continent, loc.country, loc.subdivisions, loc.lat, loc.lon)
            assert got(fields, i) == want, off
        del scan, fields, decoder
