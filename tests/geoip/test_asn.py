"""ASN lookups through geoip2 on small databases the tests build themselves."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from geodns.geoip.asn import (
    AsnDatabaseError,
    AsnDB,
    AsnInfo,
    asn_database_problems,
    explain_asn,
)
from tests.select.mmdb_writer import asn, city, write_asn_mmdb, write_mmdb

ROWS = [
    ("1.1.0.0/16", 64500, "Example Transit"),
    ("1.1.1.0/24", 13335, "Cloudflare, Inc."),
    ("2001:db8:1::/48", 64501, None),
]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_asn_mmdb(tmp_path_factory.mktemp("asn") / "asn.mmdb", ROWS)


@pytest.mark.parametrize(("ip", "expected"), [
    ("1.1.1.77", AsnInfo(13335, "Cloudflare, Inc.", ipaddress.ip_network("1.1.1.0/24"))),
    ("1.1.2.1", AsnInfo(64500, "Example Transit", ipaddress.ip_network("1.1.2.0/23"))),
    ("::ffff:1.1.1.1", AsnInfo(13335, "Cloudflare, Inc.", ipaddress.ip_network("1.1.1.0/24"))),
    ("2001:db8:1::99", AsnInfo(64501, None, ipaddress.ip_network("2001:db8:1::/48"))),
    ("fe80::1%eth0", None),
    ("9.9.9.9", None),
])
def test_lookup(db_path: Path, ip: str, expected: AsnInfo | None) -> None:
    with AsnDB.open(db_path) as db:
        assert db.lookup(ip) == expected


def test_lookup_is_a_tuple_of_asn_org_network(db_path: Path) -> None:
    with AsnDB.open(db_path) as db:
        info = db.lookup("1.1.1.1")
    assert info is not None
    number, org, network = info
    assert (number, org, str(network)) == (13335, "Cloudflare, Inc.", "1.1.1.0/24")
    assert info.describe() == "AS13335 Cloudflare, Inc. (1.1.1.0/24)"


def test_bad_address_is_a_value_error(db_path: Path) -> None:
    with AsnDB.open(db_path) as db, pytest.raises(ValueError):
        db.lookup("not-an-ip")


def test_networks_walks_the_whole_database(db_path: Path) -> None:
    with AsnDB.open(db_path) as db:
        nets = {str(n): a for n, a in db.networks()}
    assert nets["1.1.1.0/24"] == 13335 and nets["1.1.0.0/24"] == 64500
    assert nets["2001:db8:1::/48"] == 64501
    covered = sum(ipaddress.ip_network(n).num_addresses for n in nets if ":" not in n)
    assert covered == 2**16  # the /16 (split around the /24) and nothing else


def test_isp_database_works_too(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "isp.mmdb", [("5.5.0.0/16", {**asn(64999, "ISP Org"),
                                                              "isp": "ISP"})],
                      database_type="GeoIP2-ISP")
    with AsnDB.open(path) as db:
        assert db.lookup("5.5.5.5") == AsnInfo(64999, "ISP Org",
                                               ipaddress.ip_network("5.5.0.0/16"))


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p, "{p}:0: no such file"),
    (lambda p: (p.write_bytes(b"garbage" * 20), p)[1], "{p}:0: cannot read as a MaxMind DB: "),
    (lambda p: write_mmdb(p, [("1.0.0.0/8", city("EU", "DE", 50.0, 8.0))],
                          database_type="GeoLite2-City"),
     "{p}:0: a GeoLite2-City database, not an ASN database (want GeoLite2-ASN or GeoIP2-ISP)"),
])
def test_unusable_databases_are_located_problems(tmp_path: Path, make, problem: str) -> None:
    path = make(tmp_path / "db.mmdb")
    with pytest.raises(AsnDatabaseError) as info:
        AsnDB.open(path)
    assert info.value.problems[0].startswith(problem.format(p=path))
    assert asn_database_problems(path) == info.value.problems
    assert explain_asn(path, "1.1.1.1").startswith("asn: unavailable: " + problem.format(p=path))


def test_explain_line(db_path: Path) -> None:
    assert explain_asn(db_path, "1.1.1.1") == "asn: AS13335 Cloudflare, Inc. (1.1.1.0/24)"
    assert explain_asn(db_path, "9.9.9.9") == "asn: 9.9.9.9 is not in asn.mmdb"
    assert asn_database_problems(db_path) == [] and asn_database_problems(None) == []
