"""The fast reader for plain zone files reads exactly what dnspython's reader reads, or
gives the file to it (NotSimple): it never accepts a file the full reader rejects."""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.zones.fastload import NotSimple, read_wire_records
from geodns.zones.load import ZoneFileError, origin_for, read_records
from geodns.zones.store import read_zone

DATA = Path(__file__).resolve().parent.parent / "data"
REPO = DATA.parent.parent

Rec = tuple[bytes, int, int, bytes, int]


def full(path: str, text: str) -> list[Rec]:
    _origin, records = read_records(path, text, origin_for(path, text))
    return [(r.name.to_wire(), int(r.rdata.rdtype), r.ttl, r.rdata.to_wire(), r.line)  # type: ignore[misc]
            for r in records]


def fast(path: str, text: str) -> list[Rec] | None:
    try:
        return [(r.owner, r.rtype, r.ttl, r.rdata, r.line)
                for r in read_wire_records(path, text, origin_for(path, text))]
    except NotSimple:
        return None


def same_or_declined(path: str, text: str) -> bool:
    """True when the fast reader took the file (and agreed), False when it declined."""
    got = fast(path, text)
    try:
        want = full(path, text)
    except ZoneFileError:
        assert got is None, "the fast reader accepted a file with problems"
        return False
    if got is None:
        return False
    assert got == want
    return True


@pytest.mark.parametrize("path", sorted(
    [*(DATA / "golden" / "zones").iterdir(), *(DATA / "lookup").iterdir(),
     *(DATA / "interop").iterdir(), *(REPO / "zones").iterdir()], key=str),
    ids=lambda p: p.name)
def test_shipped_and_test_zones(path: Path) -> None:
    same_or_declined(str(path), path.read_text())


def test_plain_zones_take_the_fast_path() -> None:
    assert same_or_declined(str(REPO / "zones" / "example.com.zone"),
                            (REPO / "zones" / "example.com.zone").read_text())


def test_large_generated_shape_takes_the_fast_path() -> None:
    lines = ["$ORIGIN big.test.", "$TTL 3600", "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
             "@ IN NS ns1", "ns1 IN A 192.0.2.53"]
    for i in range(2000):
        lines.append(f"h{i} IN A 198.18.{i >> 8}.{i & 255}")
        lines.append(f"h{i} IN AAAA 2001:db8::{i:x}")
        lines.append(f'h{i} IN TXT "bench record {i}" "two"')
        lines.append(f"c{i} 60 IN CNAME h{i}")
        lines.append(f"m{i} IN MX 10 h{i}.big.test.")
    assert same_or_declined("/z/big.test.zone", "\n".join(lines) + "\n")


def test_directives_it_does_not_know_go_to_the_full_reader(tmp_path: Path) -> None:
    (tmp_path / "inc").write_text("x IN A 192.0.2.1\n")
    text = f"$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n$INCLUDE {tmp_path}/inc\n"
    assert fast(str(tmp_path / "a.test.zone"), text) is None
    zone = read_zone(str(tmp_path / "a.test.zone"), text)
    assert zone.includes == {f"{tmp_path}/inc"}
    assert fast("/z/a.test.zone", "$TTL 60\n$GENERATE 1-3 h$ A 192.0.2.$\n") is None


# ----------------------------------------------------------------- random files

labels = st.sampled_from(["www", "WWW", "mail", "a-b", "x1", "_srv", "*", "ns", "Deep.Er"])
owners = st.one_of(labels, st.just("@"), st.just(" "),
                   labels.map(lambda x: x + ".zone.test."))
ttls = st.sampled_from(["", "", "60", "0", "3600", "1h", "2d3h"])
classes = st.sampled_from(["", "IN", "in"])
GOOD = {
    "A": ["192.0.2.1", "10.0.0.255", "0.0.0.0"],
    "AAAA": ["2001:db8::1", "::", "2001:DB8::A", "::ffff:1.2.3.4"],
    "CNAME": ["www", "x.other.test.", "Mixed.Case"],
    "NS": ["ns", "ns.other.test."],
    "PTR": ["@", "host.example."],
    "MX": ["10 mail", "0 .", "65535 Mail.Zone.Test."],
    "TXT": ['"hello world"', '"a;b" "c"', "bare words", '"( parens )"', '""', '"é"',
            '"\\"escaped\\""'],
    "SRV": ["1 2 3 target"],
    "DYNA": ["pool-a"],
    "TYPE65400": ["\\# 3 abcdef"],
    "CAA": ['0 issue "ca.example"'],
}
BAD = [("A", "256.1.1.1"), ("A", "01.2.3.4"), ("A", "1.2.3"), ("AAAA", "1::2::3"),
       ("CNAME", "a..b"), ("MX", "65536 mail"), ("MX", "x mail"), ("TXT", '"unterminated'),
       ("DYNA", "bad pool!"), ("BOGUS", "x"), ("A", "192.0.2.1 extra")]
good = st.sampled_from(sorted(GOOD)).flatmap(lambda t: st.tuples(st.just(t),
                                                                  st.sampled_from(GOOD[t])))
rdatas = st.one_of(good, good, good, good, good, good, good, st.sampled_from(BAD))
comments = st.sampled_from(["", "", " ; note", " ;(", "\t; a \"quoted\" comment"])
heads = st.sampled_from([""] * 24 + ["CH", "4294967295", "-1", "1x"])


@st.composite
def zone_texts(draw: st.DrawFn) -> str:
    lines = ["$TTL 300"] if draw(st.booleans()) else []
    lines.append("@ IN SOA ns1 hostmaster ( 1 7200 3600" + draw(comments) + "\n  1209600 300 )")
    lines.append("@ IN NS ns1")
    lines.append("ns1 IN A 192.0.2.53")
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["$TTL 1h", "$ORIGIN sub.zone.test.",
                                               "$ORIGIN zone.test.", "", "   ", "; c"])))
            continue
        owner = draw(owners)
        ttl, cls = draw(ttls), draw(classes)
        odd = draw(heads)  # now and then a bad TTL or class
        if odd:
            ttl = odd if odd[0] in "-0123456789" else ttl
            cls = odd if odd[0].isalpha() else cls
        rtype, rdata = draw(rdatas)
        order = [ttl, cls] if draw(st.booleans()) else [cls, ttl]
        head = owner if owner != " " else ""
        lines.append(" ".join(x for x in [head, *order, rtype, rdata] if x)
                     if head else "  " + " ".join(x for x in [*order, rtype, rdata] if x))
        lines[-1] += draw(comments)
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=zone_texts())
def test_random_files_read_alike(text: str) -> None:
    same_or_declined("/z/zone.test.zone", "$ORIGIN zone.test.\n" + text)


def test_origin_name_is_what_dnspython_says() -> None:
    assert origin_for("/z/zone.test.zone", "$ORIGIN zone.test.\n") == dns.name.from_text(
        "zone.test.")
