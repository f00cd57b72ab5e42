"""Fixtures for selection tests: the real GeoLite2 db and a tiny db we control."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from geodns.config import Config, parse_config
from geodns.geoip.db import GeoDB
from tests.select.mmdb_writer import city, write_mmdb

# Networks of the tiny database (an IPv6 tree with IPv4 under ::/96, like GeoIP2).
TINY_NETWORKS: list[tuple[str, object]] = [
    ("1.1.0.0/16", city("NA", "US", 37.7, -122.4, ("CA",), "San Francisco")),
    ("1.2.0.0/16", city("NA", "US", 40.7, -74.0, ("NY",), "New York")),
    ("1.3.0.0/16", city("NA", "CA", 45.4, -75.7, ("ON",), "Ottawa")),
    ("2.1.0.0/16", city("EU", "DE", 50.1, 8.7, ("HE",), "Frankfurt")),
    ("2.2.0.0/16", city("EU", "GB", 51.5, -0.1, ("ENG", "LND"), "London")),
    ("2.3.0.0/16", city("EU", "FR", 48.9, 2.35, (), "Paris")),
    ("3.1.0.0/16", city("AS", "SG", 1.35, 103.8)),
    ("3.2.0.0/16", city("AS", "JP", 35.7, 139.7)),
    ("4.1.0.0/16", city("SA", "BR", -23.5, -46.6)),
    ("5.1.0.0/16", city("OC", "AU", -33.9, 151.2)),
    ("6.1.0.0/16", city("AF", "ZA", -26.2, 28.0)),
    ("7.0.0.0/8", {"continent": {"code": "EU"}}),  # continent only, no coordinates
    ("8.0.0.0/8", {"continent": {"code": "NA"}, "country": {"iso_code": "US"}}),
    ("9.0.0.0/8", city("NA", "US", 40.7, -74.0)),
    ("9.9.9.0/24", city("EU", "DE", 50.1, 8.7)),
    ("9.9.9.128/25", city("EU", "DE", 50.1, 8.7, ("BE",))),
    ("2001:db8:1::/48", city("EU", "DE", 50.1, 8.7, ("HE",))),
    ("2001:db8:2::/48", city("NA", "US", 37.7, -122.4, ("CA",))),
    ("2001:db8:3::/48", city("AS", "SG", 1.35, 103.8)),
]

POPS_TOML = """
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10", "192.0.2.11"]
ipv6 = ["2001:db8:10::1"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
ipv6 = ["2001:db8:20::1"]

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]
ipv6 = ["2001:db8:30::1"]

[pops.gru]
lat = -23.5
lon = -46.6
ipv4 = ["192.0.2.40"]

[pops.syd]
lat = -33.9
lon = 151.2
ipv4 = ["192.0.2.50"]
ipv6 = ["2001:db8:50::1"]

[pops.sfo]
lat = 37.6
lon = -122.4
ipv6 = ["2001:db8:60::1"]
"""


def make_config(pools: str, pops: str = POPS_TOML) -> Config:
    """A Config from pool TOML plus the standard test POPs."""
    return parse_config(pops + textwrap.dedent(pools), "/test/geodns.toml")


@pytest.fixture(scope="session")
def tiny_db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mmdb(tmp_path_factory.mktemp("mmdb") / "tiny.mmdb", TINY_NETWORKS)


@pytest.fixture(scope="session")
def tiny_db(tiny_db_path: Path) -> Iterator[GeoDB]:
    db = GeoDB.open(tiny_db_path)
    yield db
    db.close()
