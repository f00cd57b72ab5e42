"""ASN tables: the vectorised walk of an ASN database against a per-network reader."""

from __future__ import annotations

from pathlib import Path

from geodns.geoip.asn import AsnDB
from geodns.geoip.asn_tables import asn_tables
from tests.select.mmdb_writer import MAXMIND_ALIASES, write_asn_mmdb

ROWS = [
    ("81.2.64.0/20", 64500, "Transit"),
    ("81.2.69.0/24", 64501, "Access"),
    ("1.0.0.0/9", 64502, "Big"),
    ("2a02:2e0::/29", 64503, None),
    ("2a02:2e0:3fe::/48", 64500, "Transit"),
]


def test_asn_tables_match_a_per_address_reader(tmp_path: Path) -> None:
    """Every network the reader walks, with its AS; aliased IPv6 blocks (6to4, Teredo,
    IPv4-mapped) are no IPv6 networks of their own."""
    path = write_asn_mmdb(tmp_path / "asn.mmdb", ROWS, aliases=MAXMIND_ALIASES)
    tables = asn_tables(path)
    with AsnDB.open(path) as db:
        expected = {(int(n.network_address), n.version): a for n, a in db.networks()
                    if a is not None}
    got = {}
    for fam in (4, 6):
        t = tables.family(fam)
        assert t is not None
        numbers = {a: a for a in {x for x in t.asn.tolist() if x >= 0}}
        for s, _, a in t.segments(numbers):
            got[(s, fam)] = a
    assert got == expected
    assert asn_tables(path) is tables  # the same version of the file: read once
    v4 = tables.family(4)
    assert v4 is not None
    assert v4.segments({64501: 7}) == [(int.from_bytes(bytes([81, 2, 69, 0]), "big"),
                                        int.from_bytes(bytes([81, 2, 70, 0]), "big"), 7)]
