"""The bulk reader behind compiled maps: every network and record field, checked
against maxminddb's own reader, for every record size and both tree shapes."""

from __future__ import annotations

import bisect
import ipaddress
import math
import random
from pathlib import Path

import maxminddb
import pytest

from geodns.geoip.db import GeoDB
from geodns.geoip.location import Location
from geodns.geoip.tables import ALIAS_ROW, EMPTY_ROW, FamilyTable, GeoTables
from tests.select.conftest import TINY_NETWORKS
from tests.select.mmdb_writer import city, write_mmdb


def _row_location(tables: GeoTables, row: int) -> tuple[object, ...]:
    f = tables.fields
    lat, lon = float(f.lat[row]), float(f.lon[row])
    return (f.codes[f.continent[row]], f.codes[f.country[row]],
            f.subdivisions[f.subdivision[row]],
            None if math.isnan(lat) else lat, None if math.isnan(lon) else lon)


def _expected(loc: Location | None) -> tuple[object, ...] | None:
    if loc is None:
        return None
    has = loc.lat is not None and loc.lon is not None
    return (loc.continent, loc.country, loc.subdivisions, loc.lat if has else None,
            loc.lon if has else None)


def _check_address(tables: GeoTables, reader: maxminddb.Reader, fam: FamilyTable,
                   addr: int, cache: dict[int, list[int]]) -> None:
    """The table's network holding ``addr`` is the reader's network, with its fields."""
    starts = cache.get(fam.family)
    if starts is None:
        starts = cache[fam.family] = fam.starts()
    i = bisect.bisect_right(starts, addr) - 1
    ip = ipaddress.ip_address(addr) if fam.family == 4 else ipaddress.IPv6Address(addr)
    record, plen = reader.get_with_prefix_len(str(ip))
    row = int(fam.rows[i])
    if row == ALIAS_ROW:  # IPv4 inside IPv6: the reader followed the alias
        depth = int(fam.depth[i])
        v4 = (addr >> (96 - depth)) & 0xFFFFFFFF
        _check_address(tables, reader, tables.v4, v4, cache)
        return
    assert int(fam.depth[i]) == plen, str(ip)
    assert starts[i] == int(ipaddress.ip_network(f"{ip}/{plen}", strict=False).network_address)
    if record is None:
        assert row == EMPTY_ROW, str(ip)
        return
    loc = Location.from_record(record)
    want = _expected(loc)
    got = _row_location(tables, row)
    if want is None:
        assert got[:2] == (None, None)
        return
    assert got[0] == want[0] and got[1] == want[1] and got[2] == want[2], str(ip)
    assert got[3] == want[3] and got[4] == want[4], str(ip)


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_bulk_tables_agree_with_reader(tmp_path: Path, record_size: int,
                                       ip_version: int) -> None:
    nets = [n for n in TINY_NETWORKS if ip_version == 6 or ":" not in n[0]]
    path = write_mmdb(tmp_path / "t.mmdb", nets, ip_version=ip_version,
                      record_size=record_size)
    db = GeoDB.open(path, cache_dir=None)
    tables = db.tables()
    assert (tables.v6 is None) == (ip_version == 4)
    # networks partition the space: sorted, first at 0
    for fam in (tables.v4, tables.v6):
        if fam is None:
            continue
        starts = fam.starts()
        assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == len(starts)
    cache: dict[int, list[int]] = {}
    with maxminddb.open_database(str(path)) as reader:
        rnd = random.Random(record_size)
        for cidr, _ in nets:
            net = ipaddress.ip_network(cidr)
            fam = tables.v4 if net.version == 4 else tables.v6
            assert fam is not None
            for a in (net[0], net[-1], net[net.num_addresses // 2]):
                _check_address(tables, reader, fam, int(a), cache)
        for _ in range(200):
            _check_address(tables, reader, tables.v4, rnd.getrandbits(32), cache)
        if tables.v6 is not None:
            for _ in range(100):
                _check_address(tables, reader, tables.v6, (0x20010DB8 << 96) |
                               rnd.getrandbits(96), cache)
    db.close()


def test_real_database_sample_agrees_with_reader(real_db: GeoDB) -> None:
    """GeoLite2-City shares values through data-section pointers (doubles included):
    the selective decoder must follow them like the reader does."""
    tables = real_db.tables()
    assert len(tables.v4) > 1_000_000 and tables.v6 is not None
    rnd = random.Random(11)
    cache: dict[int, list[int]] = {}
    with maxminddb.open_database(str(real_db.path)) as reader:
        for _ in range(1500):
            _check_address(tables, reader, tables.v4, rnd.getrandbits(32), cache)
        for _ in range(300):
            _check_address(tables, reader, tables.v6, (0x2000 << 112) | rnd.getrandbits(112),
                           cache)
        for text in ("81.2.69.160", "::ffff:81.2.69.160", "2002:5102:45a0::1", "::1"):
            ip = ipaddress.ip_address(text)
            fam = tables.v4 if ip.version == 4 else tables.v6
            assert fam is not None
            _check_address(tables, reader, fam, int(ip), cache)


def test_cache_round_trip(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "t.mmdb", TINY_NETWORKS)
    built = GeoDB.open(path, cache_dir=tmp_path / "cache").tables()
    assert not built.from_cache and list((tmp_path / "cache").iterdir())
    again = GeoDB.open(path, cache_dir=tmp_path / "cache").tables()
    assert again.from_cache
    for a, b in ((built.v4, again.v4), (built.v6, again.v6)):
        assert a is not None and b is not None
        assert a.starts() == b.starts() and list(a.rows) == list(b.rows)
    assert built.fields.codes == again.fields.codes
    # another database content: another cache entry, not the stale one
    other = write_mmdb(tmp_path / "t.mmdb", [("1.0.0.0/8", city("EU", "DE", 50, 8))])
    third = GeoDB.open(other, cache_dir=tmp_path / "cache").tables()
    assert not third.from_cache and len(third.v4) != len(built.v4)


def test_unreadable_cache_is_rebuilt(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "t.mmdb", TINY_NETWORKS)
    GeoDB.open(path, cache_dir=tmp_path / "cache").tables()
    for f in (tmp_path / "cache").glob("*/v4_rows.npy"):
        f.write_bytes(b"garbage")
    tables = GeoDB.open(path, cache_dir=tmp_path / "cache").tables()
    assert not tables.from_cache and len(tables.v4) > 1


def test_unwritable_cache_directory_does_not_stop_the_build(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "t.mmdb", TINY_NETWORKS)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tables = GeoDB.open(path, cache_dir=blocker / "cache").tables()
    assert len(tables.v4) > 1


def test_inaccessible_cache_directory_does_not_stop_the_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After dropping privileges, the default cache may sit in a home we cannot enter."""
    path = write_mmdb(tmp_path / "t.mmdb", TINY_NETWORKS)

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", denied)
    tables = GeoDB.open(path, cache_dir=tmp_path / "cache").tables()
    assert len(tables.v4) > 1 and not tables.from_cache


def test_systemd_cache_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from geodns.geoip.tables import default_cache_dir

    monkeypatch.delenv("GEODNS_CACHE_DIR", raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/geodns")
    assert default_cache_dir() == Path("/var/cache/geodns")
