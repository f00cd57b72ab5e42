"""Smoke tests with the real ``dig``, the way an operator would poke the server.

The shipped example zone (zones/example.com.zone) is served as ``make run``
would serve it (zones/ directory, IPv4 and IPv6 listeners).  These tests only
rely on: origin example.com, an SOA, NS ns1/ns2 with A records, and
``static`` A 192.0.2.200.  Truncation is checked on the test zone
tests/data/interop (RRsets of 15, 40 and 100 A records).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import urllib.request

import pytest

from tests.helpers.net import free_port, ipv6_available
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.servers import geodns_server

DIG = shutil.which("dig")
ZONES = REPO_ROOT / "zones"
EXAMPLE_ZONE = ZONES / "example.com.zone"
BIGZONE_DIR = DATA_DIR / "interop"
STATIC = "192.0.2.200"

pytestmark = [
    pytest.mark.skipif(DIG is None, reason="dig (Debian package bind9-dnsutils) not installed"),
    pytest.mark.timeout(60),
]


# --------------------------------------------------------------------------- dig


@dataclasses.dataclass
class DigResult:
    text: str
    returncode: int
    status: str | None = None
    flags: set[str] = dataclasses.field(default_factory=set)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    sections: dict[str, list[list[str]]] = dataclasses.field(default_factory=dict)
    edns: str | None = None  # the "; EDNS: ..." line
    options: list[str] = dataclasses.field(default_factory=list)  # other OPT pseudo lines
    transport: str | None = None  # "UDP" / "TCP" from the SERVER line

    def rrs(self, section: str = "ANSWER") -> list[list[str]]:
        return self.sections.get(section, [])

    def rdata(self, section: str = "ANSWER", rtype: str | None = None) -> list[str]:
        return [" ".join(r[4:]) for r in self.rrs(section) if rtype is None or r[3] == rtype]


def parse_dig(text: str, returncode: int) -> DigResult:
    """Parse the *last* reply printed by dig (after a TCP retry there are two)."""
    res = DigResult(text=text, returncode=returncode)
    blocks = text.split(";; Got answer:")
    if len(blocks) < 2:
        return res
    last = blocks[-1]
    m = re.search(r"->>HEADER<<- opcode: (\S+), status: (\S+), id: (\d+)", last)
    if m:
        res.status = m.group(2)
    m = re.search(r";; flags:([^;]*);(.*)", last)
    if m:
        res.flags = set(m.group(1).split())
        for key, val in re.findall(r"(\w+): (\d+)", m.group(2)):
            res.counts[key] = int(val)
    section = None
    for line in last.splitlines():
        sm = re.match(r";; (\w+) (?:PSEUDO)?SECTION:", line)
        if sm:
            section = sm.group(1)
            res.sections.setdefault(section, [])
            continue
        if not line.strip() or line.startswith(";;"):
            if not line.strip():
                section = None
            continue
        if section == "OPT":
            if line.startswith("; EDNS:"):
                res.edns = line
            else:
                res.options.append(line.lstrip("; "))
        elif section == "QUESTION":
            res.sections[section].append(line.lstrip(";").split())
        elif section is not None:
            res.sections[section].append(line.split())
    m = re.search(r";; SERVER: \S+ \((\w+)\)", last)
    if m:
        res.transport = m.group(1)
    return res


def dig(port: int, *args: str, server: str = "127.0.0.1", norec: bool = True) -> DigResult:
    cmd = [DIG, f"@{server}", "-p", str(port), "+time=2", "+tries=1"]
    if norec:
        cmd.append("+norec")
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    return parse_dig(proc.stdout + proc.stderr, proc.returncode)


def dig_short(port: int, *args: str) -> list[str]:
    cmd = [DIG, "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", "+norec", "+short", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def port6() -> int | None:
    return free_port("::1") if ipv6_available() else None


@pytest.fixture(scope="module")
def example(port6):
    """geodns on the shipped zones/ directory, IPv4 (+ IPv6 when available)."""
    assert EXAMPLE_ZONE.exists(), f"the shipped example zone {EXAMPLE_ZONE} is missing"
    extra: tuple[str, ...] = ("--config", str(ZONES.parent / "geodns.toml"))
    if port6:
        extra += ("--listen", f"[::1]:{port6}")
    with geodns_server(ZONES, extra) as server:
        yield server
        assert server.alive(), server.stderr_text()[-4000:]


@pytest.fixture(scope="module")
def bigzone():
    with geodns_server(BIGZONE_DIR) as server:
        yield server
        assert server.alive(), server.stderr_text()[-4000:]


def _ok(r: DigResult) -> None:
    assert r.returncode == 0, r.text
    assert r.status is not None, f"dig got no answer:\n{r.text}"


# --------------------------------------------------------------------------- example.com


def test_soa_at_apex(example):
    r = dig(example.port, "example.com", "SOA")
    _ok(r)
    assert r.status == "NOERROR", r.text
    assert {"qr", "aa"} <= r.flags, r.text
    assert "ra" not in r.flags and "rd" not in r.flags, r.text
    assert r.counts["ANSWER"] == 1, r.text
    owner, _ttl, cls, rtype = r.rrs()[0][:4]
    assert (owner.lower(), cls, rtype) == ("example.com.", "IN", "SOA"), r.text


def test_ns_at_apex(example):
    r = dig(example.port, "example.com", "NS")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    assert {x.lower() for x in r.rdata(rtype="NS")} == {"ns1.example.com.", "ns2.example.com."}


@pytest.mark.parametrize("host", ["ns1", "ns2"])
def test_nameserver_addresses(example, host):
    r = dig(example.port, f"{host}.example.com", "A")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    addrs = r.rdata(rtype="A")
    assert addrs, r.text
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) for a in addrs), r.text


def test_static_short(example):
    assert dig_short(example.port, "static.example.com", "A") == [STATIC]


def test_static_full(example):
    r = dig(example.port, "static.example.com", "A")
    _ok(r)
    assert r.status == "NOERROR", r.text
    assert {"qr", "aa"} <= r.flags and "tc" not in r.flags, r.text
    assert r.rdata() == [STATIC], r.text
    assert r.transport == "UDP"
    assert r.edns is not None, "dig sends EDNS by default: the reply must carry OPT"


def test_static_over_tcp(example):
    r = dig(example.port, "+tcp", "static.example.com", "A")
    _ok(r)
    assert r.transport == "TCP", r.text
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    assert r.rdata() == [STATIC], r.text


def test_tcp_keepopen_several_queries(example):
    # dig +keepopen sends the queries one after the other on one TCP connection
    r = subprocess.run(
        [DIG, "@127.0.0.1", "-p", str(example.port), "+time=2", "+tries=1", "+norec",
         "+tcp", "+keepopen", "+short",
         "static.example.com", "A", "example.com", "NS", "static.example.com", "A"],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines[0] == STATIC and lines[-1] == STATIC, r.stdout
    assert {x.lower() for x in lines[1:-1]} == {"ns1.example.com.", "ns2.example.com."}


def test_ipv6_listener(example, port6):
    if port6 is None:
        pytest.skip("no IPv6 on the loopback interface")
    r = dig(port6, "static.example.com", "A", server="::1")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    assert r.rdata() == [STATIC], r.text


@pytest.mark.parametrize(
    ("subnet", "echo"),
    [
        ("81.2.69.0/24", "81.2.69.0/24/0"),
        ("2001:db8:1234::/48", "2001:db8:1234::/48/0"),
        ("0.0.0.0/0", "0.0.0.0/0/0"),
    ],
)
def test_client_subnet_echoed_with_scope_0(example, subnet, echo):
    r = dig(example.port, f"+subnet={subnet}", "static.example.com", "A")
    _ok(r)
    assert r.status == "NOERROR", r.text
    assert r.rdata() == [STATIC], r.text
    ecs = [o for o in r.options if o.startswith("CLIENT-SUBNET:")]
    assert ecs == [f"CLIENT-SUBNET: {echo}"], r.text


def test_cookie_returned_and_accepted(example):
    # dig sends a client COOKIE; we answer with client + server cookie (RFC 7873/9018),
    # which dig checks against the client cookie it sent ("good")
    r = dig(example.port, "+cookie", "static.example.com", "A")
    _ok(r)
    assert r.status == "NOERROR" and r.rdata() == [STATIC], r.text
    cookies = [o for o in r.options if o.startswith("COOKIE:")]
    assert len(cookies) == 1, r.text
    m = re.fullmatch(r"COOKIE: ([0-9a-f]{48}) \(good\)", cookies[0])
    assert m, r.text
    full = m.group(1)
    assert full[16:18] == "01", r.text  # RFC 9018 version 1
    # a second query presenting that cookie is accepted: same answer, the cookie comes
    # back (fresh: the same one), and dig has nothing to complain about
    again = dig(example.port, f"+cookie={full}", "static.example.com", "A")
    _ok(again)
    assert again.status == "NOERROR" and again.rdata() == [STATIC], again.text
    assert [o for o in again.options if o.startswith("COOKIE:")] == [f"COOKIE: {full} (good)"]
    assert "BADCOOKIE" not in again.text and "warning" not in again.text.lower(), again.text
    # and the server counted it as a valid server cookie (not one it replaced)
    url = f"http://127.0.0.1:{example.control_port()}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        metrics = resp.read().decode()
    valid = re.search(r'geodns_cookies_total{result="valid"} (\S+)', metrics)
    assert valid and float(valid.group(1)) >= 1, metrics


def test_do_bit_echoed(example):
    r = dig(example.port, "+dnssec", "static.example.com", "A")
    _ok(r)
    assert r.edns is not None and re.search(r"flags:[^;]*\bdo\b", r.edns), r.text


def test_noedns_reply_has_no_opt(example):
    r = dig(example.port, "+noedns", "static.example.com", "A")
    _ok(r)
    assert r.edns is None and r.counts["ADDITIONAL"] == 0, r.text
    assert r.rdata() == [STATIC], r.text


def test_badvers(example):
    r = dig(example.port, "+edns=1", "+noednsneg", "static.example.com", "A")
    _ok(r)
    assert r.status == "BADVERS", r.text
    assert r.edns is not None and "version: 0" in r.edns, r.text
    assert r.counts["ANSWER"] == 0, r.text


def test_nxdomain(example):
    soa = dig(example.port, "example.com", "SOA")
    _ok(soa)
    soa_rr = soa.rrs()[0]
    soa_ttl, soa_minimum = int(soa_rr[1]), int(soa_rr[-1])
    r = dig(example.port, "no-such-name-4711.example.com", "A")
    _ok(r)
    assert r.status == "NXDOMAIN", r.text
    assert "aa" in r.flags, r.text
    assert r.counts["ANSWER"] == 0, r.text
    auth = r.rrs("AUTHORITY")
    assert len(auth) == 1 and auth[0][3] == "SOA" and auth[0][0].lower() == "example.com.", r.text
    assert int(auth[0][1]) == min(soa_ttl, soa_minimum), r.text


def test_nodata(example):
    r = dig(example.port, "static.example.com", "TYPE65280")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    assert r.counts["ANSWER"] == 0, r.text
    assert [x[3] for x in r.rrs("AUTHORITY")] == ["SOA"], r.text


@pytest.mark.parametrize("name", ["www.example.invalid", "example.org", "com", "."])
def test_refused_outside_served_zones(example, name):
    r = dig(example.port, name, "A")
    _ok(r)
    assert r.status == "REFUSED", r.text
    assert "aa" not in r.flags, r.text
    assert r.counts["ANSWER"] == 0, r.text


def test_chaos_class_refused(example):
    r = dig(example.port, "version.bind", "TXT", "CH")
    _ok(r)
    assert r.status == "REFUSED", r.text


def test_rd_echoed_ra_never_set(example):
    r = dig(example.port, "static.example.com", "A", norec=False)
    _ok(r)
    assert "rd" in r.flags and "ra" not in r.flags, r.text
    assert r.rdata() == [STATIC], r.text


def test_case_of_question_echoed(example):
    r = dig(example.port, "StAtIc.ExAmPlE.cOm", "A")
    _ok(r)
    assert r.rrs("QUESTION")[0][0] == "StAtIc.ExAmPlE.cOm.", r.text
    assert r.rdata() == [STATIC], r.text


def test_any_is_minimal(example):
    r = dig(example.port, "example.com", "ANY")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    types = {x[3] for x in r.rrs()}
    assert len(types) == 1, f"RFC 8482: one RRset expected\n{r.text}"


def test_axfr_not_implemented(example):
    proc = subprocess.run(
        [DIG, "@127.0.0.1", "-p", str(example.port), "+time=2", "+tries=1", "example.com", "AXFR"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    out = proc.stdout + proc.stderr
    assert "Transfer failed" in out or "NOTIMP" in out, out
    assert "XFR size" not in out, out


# --------------------------------------------------------------------------- truncation


def test_big_answer_fits_1232(bigzone):
    r = dig(bigzone.port, "+bufsize=1232", "+ignore", "big.interop.example", "A")
    _ok(r)
    assert r.transport == "UDP" and "tc" not in r.flags, r.text
    assert r.counts["ANSWER"] == 40, r.text


def test_big_answer_truncated_at_512_with_ignore(bigzone):
    r = dig(bigzone.port, "+bufsize=512", "+ignore", "big.interop.example", "A")
    _ok(r)
    assert "tc" in r.flags, r.text
    assert (r.counts["ANSWER"], r.counts["AUTHORITY"]) == (0, 0), r.text
    assert r.counts["ADDITIONAL"] == 1 and r.edns is not None, "TC reply keeps the OPT record"
    assert r.rrs("QUESTION")[0][0] == "big.interop.example.", r.text


def test_big_answer_truncated_without_edns(bigzone):
    r = dig(bigzone.port, "+noedns", "+ignore", "big.interop.example", "A")
    _ok(r)
    assert "tc" in r.flags, r.text
    assert (r.counts["ANSWER"], r.counts["AUTHORITY"], r.counts["ADDITIONAL"]) == (0, 0, 0)


def test_big_answer_dig_retries_over_tcp(bigzone):
    r = dig(bigzone.port, "+bufsize=512", "big.interop.example", "A")
    _ok(r)
    assert "Truncated, retrying in TCP mode" in r.text, r.text
    assert r.transport == "TCP" and "tc" not in r.flags, r.text
    assert sorted(r.rdata()) == sorted(f"10.0.0.{i}" for i in range(1, 41)), r.text


def test_udp_limit_capped_at_1232(bigzone):
    r = dig(bigzone.port, "+bufsize=4096", "+ignore", "huge.interop.example", "A")
    _ok(r)
    assert "tc" in r.flags and r.counts["ANSWER"] == 0, r.text


def test_huge_answer_whole_over_tcp(bigzone):
    r = dig(bigzone.port, "+tcp", "huge.interop.example", "A")
    _ok(r)
    assert r.counts["ANSWER"] == 100 and "tc" not in r.flags, r.text


@pytest.mark.parametrize(("name", "tc"), [("medium", False), ("big", True)])
def test_small_client_payload_treated_as_512(bigzone, name, tc):
    r = dig(bigzone.port, "+bufsize=100", "+ignore", f"{name}.interop.example", "A")
    _ok(r)
    assert ("tc" in r.flags) is tc, r.text
    if not tc:
        assert r.counts["ANSWER"] == 15, r.text


# --------------------------------------------------------------------------- steered names


@pytest.mark.parametrize(("subnet", "expected"), [
    ("81.2.69.0/24", "192.0.2.20"),  # London: fra (the README's example)
    ("1.1.1.0/24", "192.0.2.50"),  # Australia: syd
    ("200.160.0.0/24", "192.0.2.40"),  # Brazil: gru
    ("8.8.8.0/24", "192.0.2.10"),  # United States: iad
])
def test_steered_www_by_subnet(example, subnet: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    r = dig(example.port, "www.example.com", f"+subnet={subnet}")
    _ok(r)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert [rr[-1] for rr in r.rrs()] == [expected]
    # ECS echoed with family, source and address unchanged and a tailored scope
    ecs = [o for o in r.options if o.startswith("CLIENT-SUBNET:")]
    assert len(ecs) == 1
    echoed, scope = ecs[0].split()[-1].rsplit("/", 1)
    assert echoed == subnet and int(scope) > 0


def test_steered_api_by_continent_and_aaaa(example) -> None:  # type: ignore[no-untyped-def]
    assert dig_short(example.port, "api.example.com", "+subnet=81.2.69.0/24") == ["192.0.2.20"]
    assert dig_short(example.port, "api.example.com", "AAAA",
                     "+subnet=1.1.1.0/24") == ["2001:db8:50::1"]
    assert dig(example.port, "www.example.com", "MX").status == "NOERROR"  # NODATA


def test_nsid_names_the_node(example) -> None:  # type: ignore[no-untyped-def]
    """`dig +nsid`: the shipped config (nsid = true) answers with the host name (RFC 5001)
    beside a normal answer, and sends no NSID to a query that did not ask."""
    import socket

    r = dig(example.port, "+nsid", "static.example.com", "A")
    _ok(r)
    assert r.status == "NOERROR" and r.rdata() == [STATIC], r.text
    nsid = [o for o in r.options if o.startswith("NSID")]
    assert len(nsid) == 1 and f'("{socket.gethostname()}")' in nsid[0], r.text
    plain = dig(example.port, "static.example.com", "A")
    assert not [o for o in plain.options if o.startswith("NSID")], plain.text
