"""GeoDB: default database, one-address lookups for explain, change detection, distances."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import maxminddb
import pytest

from geodns.config import default_geoip_database
from geodns.geoip.db import GeoDB
from geodns.geoip.location import Location, haversine_km
from geodns.watch import file_key
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


def test_city_model_through_geoip2(real_db: GeoDB) -> None:
    city = real_db.city("81.2.69.160")
    assert city is not None and city.country.iso_code == "GB" and city.city.name
    assert real_db.city("127.0.0.1") is None


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
