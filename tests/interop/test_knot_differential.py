"""Differential tests: geodns against Knot DNS on the same zone files.

Both servers load every zone in tests/data/interop: interop.example. (the main
test zone), its child zone child.interop.example. (also delegated from the
parent, with a DS there) and an unrelated other.example.  Every query in
QUERIES is sent, byte for byte identical, to both servers in every transport
mode of MODES, and the replies must agree on:

* rcode, AA, TC, RA, RD and the question section (exact case: 0x20 echo);
* presence of an OPT record and the DO bit;
* the answer section, as a set of RRsets with TTLs (owner names and the names
  inside RDATA compared case-insensitively);
* the authority section for negative answers (NXDOMAIN / NODATA, including
  NODATA/NXDOMAIN at the end of a CNAME chain) and for referrals;
* the additional section (glue) for referrals;
* all sections for truncated (TC=1) replies.

The test ids name the mode, the query name and the type, e.g.
``test_same_as_knot[udp-edns512-big.interop.example.-A]``.

One legitimate difference is handled apart: Knot does not follow a CNAME
whose target lies in *another* zone it serves (it stops after the CNAME, or
gives the parent's referral for a target in a served child zone), while
geodns follows chains through every served zone.  For those queries
(CROSS_ZONE) the expected reply is composed from Knot's own replies for
each link of the chain (test_cross_zone_chain_composed_from_knot).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.helpers.knot import knot_server, knotd_path
from tests.helpers.paths import DATA_DIR
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server

ZONE_DIR = DATA_DIR / "interop"
ZONE_FILES = sorted(ZONE_DIR.glob("*.zone"))
ORIGIN = "interop.example."
SERVED = [dns.name.from_text(o) for o in ("interop.example.", "child.interop.example.",
                                           "other.example.")]  # fmt: skip

pytestmark = [
    pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) not installed"),
    pytest.mark.timeout(60),
]


def _q(rel: str, qtype: str) -> tuple[str, str]:
    """A query for ``rel`` relative to the test zone ('@' is the apex)."""
    name = ORIGIN if rel == "@" else f"{rel}.{ORIGIN}"
    return (name, qtype)


QUERIES: list[tuple[str, str]] = [
    # apex and plain data
    _q("@", "SOA"),
    _q("@", "NS"),
    _q("@", "MX"),
    _q("@", "TXT"),
    _q("@", "A"),  # NODATA at the apex
    _q("@", "DS"),  # DS at the apex of a zone whose parent is not served
    _q("ns1", "A"),
    _q("ns1", "AAAA"),
    _q("ns2", "AAAA"),  # NODATA
    _q("www", "A"),
    _q("www", "AAAA"),
    _q("www", "TXT"),  # RRset with its own TTL, two strings
    _q("www", "MX"),  # NODATA
    _q("www", "CNAME"),  # NODATA: not a CNAME
    _q("www", "TYPE65280"),  # unknown type: NODATA
    _q("_sip._tcp", "SRV"),
    _q("_tcp", "SRV"),  # empty non-terminal
    _q("www", "SOA"),  # NODATA: SOA only at the apex
    _q("www", "DS"),  # NODATA: not a delegation point
    _q("www", "RRSIG"),  # unsigned zone: NODATA
    _q("a\\.b", "A"),  # escaped dot inside a label
    _q("a.b", "A"),  # ...which is not the two labels a.b: NXDOMAIN
    _q("mixed", "A"),  # owner written MiXeD in the zone file
    _q("MIXED", "A"),
    _q("abcdefghij" * 6 + "123", "A"),  # 63-octet label
    _q(".".join(["x" * 60] * 3) + ".long", "A"),  # long name, NXDOMAIN
    # NXDOMAIN
    _q("nonexistent", "A"),
    _q("nonexistent", "AAAA"),
    _q("a.b.nonexistent", "A"),
    _q("sub.www", "A"),  # below an existing leaf
    # empty non-terminals
    _q("deep", "A"),
    _q("ent.deep", "A"),
    _q("ent.deep", "NS"),
    _q("host.ent.deep", "A"),
    _q("x.deep", "A"),
    _q("x.ent.deep", "A"),
    # wildcards (RFC 4592)
    _q("foo.wild", "A"),
    _q("foo.wild", "TXT"),
    _q("foo.wild", "AAAA"),  # wildcard NODATA
    _q("a.b.wild", "A"),  # wildcard matching several labels
    _q("*.wild", "A"),  # the wildcard owner itself
    _q("*.foo.wild", "A"),  # a literal * label below: synthesized from *.wild
    _q("wild", "A"),  # ENT above the wildcard
    _q("exists.wild", "A"),  # existing node: no wildcard
    _q("exists.wild", "TXT"),  # existing node blocks the wildcard: NODATA
    _q("x.exists.wild", "A"),  # NXDOMAIN: closest encloser has no wildcard child
    _q("ent.wild", "A"),  # ENT blocks the wildcard: NODATA
    _q("x.ent.wild", "A"),  # NXDOMAIN
    _q("host.ent.wild", "A"),
    _q("foo.x.ewild", "A"),  # wildcard under an empty non-terminal
    _q("foo.x.ewild", "AAAA"),
    _q("a.foo.x.ewild", "A"),
    _q("x.ewild", "A"),  # ENT
    _q("ewild", "A"),  # ENT
    _q("foo.ewild", "A"),  # NXDOMAIN
    _q("bar.cw", "A"),  # wildcard CNAME, chain continues
    _q("bar.cw", "CNAME"),
    # CNAME chains
    _q("c1", "A"),
    _q("c1", "AAAA"),
    _q("c1", "TXT"),
    _q("c1", "CNAME"),  # the CNAME only
    _q("c2", "A"),
    _q("loop1", "A"),
    _q("self", "A"),
    _q("dangling", "A"),  # chain ending in NXDOMAIN
    _q("dangling", "CNAME"),
    _q("towild", "A"),  # chain ending at a wildcard
    _q("tocw", "A"),  # chain through a wildcard CNAME
    _q("tonodata", "TXT"),  # chain ending in NODATA
    _q("external", "A"),  # target outside every served zone
    _q("todeleg", "A"),  # target below a delegation
    _q("toother", "CNAME"),  # CNAME queries never chase, even across zones
    _q("tochild", "CNAME"),
    _q("x.c1", "A"),  # below a CNAME owner: NXDOMAIN
    # delegations
    _q("sub", "NS"),
    _q("sub", "A"),
    _q("sub", "SOA"),
    _q("sub", "DS"),  # answered by the parent
    _q("www.sub", "A"),
    _q("www.sub", "DS"),  # below the cut: referral
    _q("ns1.sub", "A"),  # glue is not authoritative data
    _q("ns1.sub", "AAAA"),
    _q("a.b.sub", "TXT"),
    _q("nods", "NS"),
    _q("nods", "DS"),  # no DS: NODATA + SOA from the parent
    _q("x.nods", "A"),
    # a delegation to a child zone served by the same server
    _q("child", "DS"),  # answered by the parent
    _q("child", "NS"),  # answered by the child apex
    _q("child", "SOA"),
    _q("child", "A"),  # NODATA with the child's SOA
    _q("ns1.child", "A"),  # child zone data, not parent glue
    ("www.child.interop.example.", "A"),
    ("x.child.interop.example.", "A"),  # NXDOMAIN with the child's SOA
    ("WwW.cHiLd.InTeRoP.eXaMpLe.", "AAAA"),
    # an unrelated second zone
    ("other.example.", "SOA"),
    ("other.example.", "NS"),
    ("www.other.example.", "A"),
    ("nothere.other.example.", "A"),
    ("www.other.example.", "TXT"),
    # reply sizes around the UDP limits
    _q("medium", "A"),  # ~300 bytes
    _q("big", "A"),  # > 512, < 1232
    _q("huge", "A"),  # > 1232: truncated over UDP in every mode
    _q("bigtxt", "TXT"),
    _q("big", "AAAA"),
    # 0x20: the question must be echoed in the exact case
    ("WwW.InTeRoP.ExAmPlE.", "A"),
    ("FoO.WiLd.InTeRoP.eXaMpLe.", "TXT"),
    ("NoThErE.iNtErOp.ExAmPlE.", "A"),
    ("WwW.sUb.InTeRoP.ExAmPlE.", "A"),
    ("C1.INTEROP.EXAMPLE.", "A"),
    ("BIG.interop.EXAMPLE.", "A"),
    # outside every served zone
    ("www.example.net.", "A"),
    ("example.", "SOA"),
    (".", "SOA"),
    ("interop.example.net.", "A"),
    ("example.", "NS"),  # a parent of served zones, itself not served
]

# CNAME chains that cross from one served zone into another (see the module docstring)
CROSS_ZONE: list[tuple[str, str]] = [
    _q("toother", "A"),  # into other.example.
    _q("tootherx", "A"),  # into other.example., ending in NXDOMAIN there
    _q("tochild", "A"),  # into the served child zone
    ("back.child.interop.example.", "A"),  # child -> parent
    ("tochild.other.example.", "A"),  # other.example. -> child
]


@dataclasses.dataclass(frozen=True)
class Mode:
    tcp: bool
    edns: bool
    payload: int = 1232
    do: bool = False


MODES: dict[str, Mode] = {
    "udp": Mode(tcp=False, edns=False),
    "udp-edns512": Mode(tcp=False, edns=True, payload=512),
    "udp-edns1232": Mode(tcp=False, edns=True, payload=1232),
    "udp-edns1232-do": Mode(tcp=False, edns=True, payload=1232, do=True),
    "tcp": Mode(tcp=True, edns=False),
    "tcp-edns512": Mode(tcp=True, edns=True, payload=512),
    "tcp-edns1232": Mode(tcp=True, edns=True, payload=1232),
}


@pytest.fixture(scope="module")
def knot():
    with knot_server(ZONE_FILES) as server:
        yield server


@pytest.fixture(scope="module")
def geodns():
    with geodns_server(ZONE_DIR) as server:
        yield server
        assert server.alive(), f"geodns died during the tests:\n{server.stderr_text()[-4000:]}"


# --------------------------------------------------------------------------- comparison


def _canon_rrsets(rrsets: list[dns.rrset.RRset]) -> frozenset:
    out = set()
    for rrset in rrsets:
        rdatas = frozenset(rd.to_digestable(dns.name.root).hex() for rd in rrset)
        texts = sorted(rd.to_text() for rd in rrset)
        out.add(
            (
                rrset.name.to_text().lower(),
                dns.rdatatype.to_text(rrset.rdtype),
                rrset.ttl,
                rdatas,
                # human-readable, only to make assertion diffs legible; derived from rdatas
                tuple(t.lower() for t in texts),
            )
        )
    return frozenset(out)


def _is_referral(msg: dns.message.Message) -> bool:
    return not msg.answer or all(r.rdtype == dns.rdatatype.CNAME for r in msg.answer)


def _has(section: list[dns.rrset.RRset], rdtype: dns.rdatatype.RdataType) -> bool:
    return any(r.rdtype == rdtype for r in section)


def summary(msg: dns.message.Message, reference: dns.message.Message) -> dict:
    """What must be identical; which sections are included is decided by ``reference`` (Knot)."""
    s: dict = {
        "rcode": dns.rcode.to_text(msg.rcode()),
        "AA": bool(msg.flags & dns.flags.AA),
        "TC": bool(msg.flags & dns.flags.TC),
        "RD": bool(msg.flags & dns.flags.RD),
        "RA": bool(msg.flags & dns.flags.RA),
        "question": [(q.name.to_text(), q.rdclass, q.rdtype) for q in msg.question],
        "OPT": msg.edns >= 0,
        "DO": bool(msg.ednsflags & dns.flags.DO),
        "answer": _canon_rrsets(msg.answer),
    }
    ref_rcode = reference.rcode()
    negative = ref_rcode == dns.rcode.NXDOMAIN or _has(reference.authority, dns.rdatatype.SOA)
    referral = _has(reference.authority, dns.rdatatype.NS) and _is_referral(reference)
    truncated = bool(reference.flags & dns.flags.TC)
    if negative or referral or truncated:
        s["authority"] = _canon_rrsets(msg.authority)
    if referral or truncated:
        s["additional"] = _canon_rrsets(msg.additional)
    return s


CASES = [
    pytest.param(mode, qname, qtype, id=f"{mode}-{qname}-{qtype}")
    for (qname, qtype) in QUERIES
    for mode in MODES
]


@pytest.mark.parametrize(("mode", "qname", "qtype"), CASES)
def test_same_as_knot(knot, geodns, mode: str, qname: str, qtype: str) -> None:
    m = MODES[mode]
    query = make_query(qname, qtype, edns=0 if m.edns else None, payload=m.payload, do=m.do)
    # dnspython lower-cases nothing: the question goes out in the case written above
    want = ask(knot.port, query, tcp=m.tcp)
    got = ask(geodns.port, query, tcp=m.tcp)
    want_s = summary(want, want)
    got_s = summary(got, want)
    assert got_s == want_s, (
        f"geodns differs from knotd for {qname} {qtype} over {mode}\n"
        f"--- knotd\n{want.to_text()}\n--- geodns\n{got.to_text()}"
    )


def _in_served_zone(name: dns.name.Name) -> bool:
    return any(name.is_subdomain(z) for z in SERVED)


def _compose_from_knot(knot_port: int, qname: str, qtype: str, m: Mode) -> dns.message.Message:
    """Follow a cross-zone CNAME chain by asking Knot for every link; merge the replies."""
    first = ask(knot_port, make_query(qname, qtype, edns=0 if m.edns else None,
                                      payload=m.payload, do=m.do), tcp=m.tcp)  # fmt: skip
    merged = dns.message.from_wire(first.to_wire())
    seen = {dns.name.from_text(qname).canonicalize()}
    last = first
    for _ in range(8):
        cnames = [r for r in last.answer if r.rdtype == dns.rdatatype.CNAME]
        owners = {r.name.canonicalize() for r in last.answer}
        targets = [rd.target for r in cnames for rd in r if rd.target.canonicalize() not in owners]
        if (
            not targets
            or targets[0].canonicalize() in seen
            or not _in_served_zone(targets[0])
            or any(r.rdtype == dns.rdatatype.from_text(qtype) for r in last.answer)
            or _has(last.authority, dns.rdatatype.SOA)
        ):
            break
        target = targets[0]
        seen.add(target.canonicalize())
        last = ask(knot_port, make_query(target, qtype, edns=0 if m.edns else None,
                                         payload=m.payload, do=m.do), tcp=m.tcp)  # fmt: skip
        for rrset in last.answer:
            merged.answer.append(rrset)
        merged.authority = list(last.authority)
        merged.additional = list(last.additional)
        merged.set_rcode(last.rcode())
    return merged


@pytest.mark.parametrize(
    ("mode", "qname", "qtype"),
    [
        pytest.param(mode, qname, qtype, id=f"{mode}-{qname}-{qtype}")
        for (qname, qtype) in CROSS_ZONE
        for mode in MODES
    ],
)
def test_cross_zone_chain_composed_from_knot(
    knot, geodns, mode: str, qname: str, qtype: str
) -> None:
    m = MODES[mode]
    query = make_query(qname, qtype, edns=0 if m.edns else None, payload=m.payload, do=m.do)
    want = _compose_from_knot(knot.port, qname, qtype, m)
    got = ask(geodns.port, query, tcp=m.tcp)
    want_s = summary(want, want)
    got_s = summary(got, want)
    assert got_s == want_s, (
        f"geodns differs from the chain composed from knotd replies for {qname} {qtype} "
        f"over {mode}\n--- composed from knotd\n{want.to_text()}\n--- geodns\n{got.to_text()}"
    )


def test_zone_dir_holds_only_the_zones_both_servers_load() -> None:
    # knotd gets ZONE_FILES (*.zone); geodns serves every file of the directory
    files = sorted(p for p in Path(ZONE_DIR).iterdir() if p.is_file())
    assert files == ZONE_FILES
    assert len(ZONE_FILES) == len(SERVED)


# ------------------------------------------------------- issue 14: anycast protocol details

NSID_KNOT = "knot-node"
NSID_GEODNS = "geodns-node"


@pytest.fixture(scope="module")
def knot_nsid():
    with knot_server(ZONE_FILES, nsid=NSID_KNOT) as server:
        yield server


@pytest.fixture(scope="module")
def geodns_nsid(tmp_path_factory: pytest.TempPathFactory):
    conf = tmp_path_factory.mktemp("nsid") / "geodns.toml"
    conf.write_text(f'[server]\nnsid = "{NSID_GEODNS}"\n')
    with geodns_server(ZONE_DIR, ["--config", str(conf)]) as server:
        yield server


def _option(msg: dns.message.Message, code: int) -> bytes | None:
    for opt in msg.options:
        if opt.otype == code:
            return opt.to_wire()
    return None


@pytest.mark.parametrize("asked", [True, False])
@pytest.mark.parametrize(("qname", "qtype"), [_q("@", "SOA"), _q("www", "A"), _q("nope", "A")])
def test_nsid_only_when_asked(knot_nsid, geodns_nsid, asked: bool, qname: str,
                              qtype: str) -> None:
    opts = [dns.edns.GenericOption(3, b"")] if asked else []
    query = make_query(qname, qtype, edns=0, options=opts)
    want = ask(knot_nsid.port, query)
    got = ask(geodns_nsid.port, query)
    assert summary(got, want) == summary(want, want)
    assert (_option(want, 3) is not None) == asked
    assert _option(got, 3) == (NSID_GEODNS.encode() if asked else None)


@pytest.mark.parametrize(("qname", "qtype"), [_q("@", "SOA"), ("other.example.", "SOA"),
                                               _q("www", "A"), _q("@", "NS")])
def test_edns_expire_like_knot(knot, geodns, qname: str, qtype: str) -> None:
    """RFC 7314: a primary answers a query that carries EXPIRE with its zone's SOA expire
    value, as Knot does for every authoritative answer."""
    query = make_query(qname, qtype, edns=0, options=[dns.edns.GenericOption(9, b"")])
    want = ask(knot.port, query)
    got = ask(geodns.port, query)
    assert summary(got, want) == summary(want, want)
    assert _option(got, 9) == _option(want, 9)


@pytest.mark.parametrize(("qname", "qtype"), [_q("@", "SOA"), _q("www", "A"), _q("nope", "A"),
                                               _q("alias", "A"), _q("sub", "A")])
@pytest.mark.parametrize("edns", [False, True])
def test_class_any_questions_are_answered_from_in(knot, geodns, qname: str, qtype: str,
                                                  edns: bool) -> None:
    query = make_query(qname, qtype, edns=0 if edns else None, qclass="ANY")
    want = ask(knot.port, query)
    got = ask(geodns.port, query)
    assert summary(got, want) == summary(want, want)


@pytest.mark.parametrize(("qname", "qtype"), [_q("@", "NS"), _q("@", "MX"),
                                               _q("_sip._tcp", "SRV"), ("other.example.", "NS")])
@pytest.mark.parametrize("mode", ["udp-edns1232", "tcp", "udp-edns512"])
def test_additional_addresses_like_knot(knot, geodns, qname: str, qtype: str,
                                        mode: str) -> None:
    """NS, MX and SRV answers carry their in-zone targets' A/AAAA as space allows."""
    m = MODES[mode]
    query = make_query(qname, qtype, edns=0 if m.edns else None, payload=m.payload)
    want = ask(knot.port, query, tcp=m.tcp)
    got = ask(geodns.port, query, tcp=m.tcp)
    assert summary(got, want) == summary(want, want)
    assert not got.flags & dns.flags.TC
    assert _canon_rrsets(got.additional) == _canon_rrsets(want.additional)
