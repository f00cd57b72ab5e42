"""GeoDB: default database, prefix lengths, change detection, distances."""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
from pathlib import Path

import maxminddb
import pytest

from geodns.config import default_geoip_database
from geodns.geo import GeoDB, Location, file_key, haversine_km
from tests.select.conftest import TINY_NETWORKS
from tests.select.mmdb_writer import city, write_mmdb


@pytest.fixture(scope="module")
def real_db() -> GeoDB:
    return GeoDB.open()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> GeoDB:
    return GeoDB.open(write_mmdb(tmp_path_factory.mktemp("g") / "t.mmdb", TINY_NETWORKS))


def test_default_database_is_the_packaged_geolite2_city() -> None:
    path = default_geoip_database()
    assert path.name == "GeoLite2-City.mmdb" and path.is_file()
    db = GeoDB.open()
    assert db.path == path
    assert db.database_type == "GeoLite2-City"
    assert db.ip_version == 6


def test_real_lookup_london(real_db: GeoDB) -> None:
    loc, plen = real_db.lookup_int(4, int(ipaddress.IPv4Address("81.2.69.160")))
    assert loc is not None
    assert (loc.continent, loc.country) == ("EU", "GB")
    assert loc.subdivisions[0] == "GB-ENG"
    assert loc.has_coords and 51 < (loc.lat or 0) < 52
    # IPv4 prefix lengths are relative to IPv4 although the database is IPv6.
    assert plen == 23
    assert real_db.lookup("81.2.69.160")[1] == "81.2.68.0/23"


def test_ipv4_prefix_is_relative_to_ipv4_on_ipv6_db(tiny: GeoDB) -> None:
    assert tiny.ip_version == 6
    assert tiny.lookup_int(4, int(ipaddress.IPv4Address("1.2.3.4")))[1] == 16
    assert tiny.lookup_int(4, int(ipaddress.IPv4Address("9.9.9.200")))[1] == 25
    assert tiny.lookup_int(6, int(ipaddress.IPv6Address("2001:db8:1::5")))[1] == 48
    # the raw reader agrees, for both the C extension and the pure-Python reader
    for mode in (maxminddb.MODE_MMAP_EXT, maxminddb.MODE_FILE):
        with maxminddb.open_database(str(tiny.path), mode) as r:
            assert r.get_with_prefix_len("1.2.3.4")[1] == 16


def _agree_with_reader(db: GeoDB, addrs: list[tuple[int, int]]) -> None:
    slow = GeoDB.open(db.path, fast=False)
    assert db._walker is not None and slow._walker is None
    with maxminddb.open_database(str(db.path), maxminddb.MODE_FILE) as pure:
        for family, addr in addrs:
            text = str(ipaddress.IPv4Address(addr) if family == 4 else ipaddress.IPv6Address(addr))
            rec, plen = pure.get_with_prefix_len(text)
            expected = (Location.from_record(rec), plen)
            assert db.lookup_int(family, addr) == expected, text
            assert db.lookup_int(family, addr) == expected, text  # cached record
            assert slow.lookup_int(family, addr) == expected, text
    slow.close()


def test_tree_walker_agrees_with_reader_on_real_db(real_db: GeoDB) -> None:
    rnd = random.Random(7)
    addrs = [(4, rnd.getrandbits(32)) for _ in range(300)]
    addrs += [(6, (0x2000 << 112) | rnd.getrandbits(112)) for _ in range(200)]
    addrs += [(4, 0), (4, 2**32 - 1), (6, 0), (6, 2**128 - 1), (6, 0xFFFF << 32 | 0x08080808)]
    _agree_with_reader(real_db, addrs)


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_tree_walker_agrees_with_reader_for_every_record_size(
        tmp_path: Path, record_size: int, ip_version: int) -> None:
    nets = [n for n in TINY_NETWORKS if ip_version == 6 or ":" not in n[0]]
    path = write_mmdb(tmp_path / "t.mmdb", nets, ip_version=ip_version,
                      record_size=record_size)
    db = GeoDB.open(path)
    rnd = random.Random(record_size)
    addrs = [(4, rnd.getrandbits(32)) for _ in range(200)]
    for cidr, _ in nets:
        net = ipaddress.ip_network(cidr)
        for a in (net[0], net[-1], net[net.num_addresses // 2]):
            addrs.append((a.version, int(a)))
    if ip_version == 6:
        addrs += [(6, (0x20010DB8 << 96) | rnd.getrandbits(96)) for _ in range(100)]
    _agree_with_reader(db, addrs)
    db.close()


def test_unknown_and_partial_records(tiny: GeoDB) -> None:
    assert tiny.lookup_int(4, int(ipaddress.IPv4Address("10.0.0.1")))[0] is None
    loc = tiny.lookup_int(4, int(ipaddress.IPv4Address("7.1.1.1")))[0]
    assert loc == Location(continent="EU")
    assert not loc.has_coords
    loc = tiny.lookup_int(4, int(ipaddress.IPv4Address("8.1.1.1")))[0]
    assert loc is not None and (loc.continent, loc.country, loc.lat) == ("NA", "US", None)
    loc = tiny.lookup_int(4, int(ipaddress.IPv4Address("2.2.2.2")))[0]
    assert loc is not None and loc.subdivisions == ("GB-ENG", "GB-LND")
    assert loc.city == "London"


def test_ipv4_only_database(tmp_path: Path) -> None:
    db = GeoDB.open(write_mmdb(tmp_path / "v4.mmdb", [("1.0.0.0/8", city("EU", "DE", 50, 8))],
                               ip_version=4))
    assert db.ip_version == 4
    loc, plen = db.lookup_int(4, int(ipaddress.IPv4Address("1.2.3.4")))
    assert loc is not None and loc.country == "DE" and plen == 8
    # IPv6 cannot be in an IPv4 database: unknown over the whole space
    assert db.lookup_int(6, 1 << 127) == (None, 0)


def test_file_key_and_changed(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "a.mmdb", TINY_NETWORKS)
    db = GeoDB.open(path)
    assert db.key == file_key(path)
    assert not db.changed()
    # replaced by rename (what updaters do): new inode
    other = write_mmdb(tmp_path / "b.mmdb", TINY_NETWORKS[:3])
    os.replace(other, path)
    assert db.changed()
    db2 = GeoDB.open(path)
    assert not db2.changed()
    # rewritten in place with another size
    shutil.copyfile(write_mmdb(tmp_path / "c.mmdb", TINY_NETWORKS[:5]), path)
    assert db2.changed()
    path.unlink()
    assert file_key(path) is None and db2.changed()


def test_haversine_known_distances() -> None:
    assert haversine_km(0, 0, 0, 0) == 0
    # London - Paris ~ 344 km; New York - London ~ 5570 km
    assert 340 < haversine_km(51.5074, -0.1278, 48.8566, 2.3522) < 346
    assert 5560 < haversine_km(40.7128, -74.0060, 51.5074, -0.1278) < 5580
    # antipodes: half the circumference
    assert abs(haversine_km(0, 0, 0, 180) - 20015) < 5


def test_location_from_odd_records() -> None:
    assert Location.from_record(None) is None
    assert Location.from_record("string") is None
    assert Location.from_record({}) is None
    assert Location.from_record({"registered_country": {"iso_code": "fr"}}) == Location(
        country="FR")
    loc = Location.from_record({"country": {"iso_code": "US"},
                                "subdivisions": [{"iso_code": "ca"}, {"x": 1}],
                                "location": {"latitude": 1, "longitude": "bad"}})
    assert loc == Location(country="US", subdivisions=("US-CA",))
    assert "country=US" in loc.describe()


def test_tree_path_and_sibling_networks(tiny: GeoDB) -> None:
    addr = int(ipaddress.IPv4Address("1.2.3.4"))
    path = tiny.tree_path(4, addr)
    assert path is not None and len(path) == 16  # 1.2.0.0/16 is a leaf at depth 16
    # the sibling of 1.2.0.0/16 is 1.3.0.0/16, one network (Ottawa)
    nets = tiny.sibling_networks(4, addr, path, 16, 100)
    assert nets is not None and len(nets) == 1
    start, plen, loc = nets[0]
    assert (str(ipaddress.IPv4Address(start)), plen) == ("1.3.0.0", 16)
    assert loc is not None and loc.city == "Ottawa"
    # the sibling of 1.2.0.0/15 is 1.0.0.0/15: 1.0.0.0/16 (no data) and 1.1.0.0/16
    nets = tiny.sibling_networks(4, addr, path, 15, 100)
    assert nets is not None
    assert [(str(ipaddress.IPv4Address(s)), p, loc is not None) for s, p, loc in nets] == [
        ("1.0.0.0", 16, False), ("1.1.0.0", 16, True)]
    # too many nodes for the budget
    assert tiny.sibling_networks(4, addr, path, 5, 2) is None  # 8.0.0.0/5: 8/8, 9/8 split
    assert GeoDB.open(tiny.path, fast=False).tree_path(4, addr) is None
