"""Zone transfer and other-opcode details compared with Knot DNS on the same zones
(issue 14): AXFR contents and the EDNS EXPIRE option (RFC 7314) in it, IXFR when up
to date, and NOTIFY/UPDATE/STATUS replies keeping the OPT record.

Decided differences, asserted as such: AXFR answers carry AA (RFC 5936 2.2.1; Knot
leaves it clear); a NOTIFY from a host that is not a primary is
REFUSED by geodns (Knot: NOTAUTH); UPDATE is NOTIMP (Knot: NOTAUTH without an ACL).
"""

from __future__ import annotations

import struct
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.update
import pytest

from geodns.xfr import expire
from tests.helpers.knot import knotd_path
from tests.helpers.paths import DATA_DIR
from tests.helpers.queries import tcp_connect, tcp_read_message
from tests.xfr.servers import ask_other, free_port, geodns, knot

pytestmark = [
    pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) not installed"),
    pytest.mark.timeout(60),
]

ZONES = sorted((DATA_DIR / "interop").glob("*.zone"))
ORIGIN = "interop.example."


def knot_body(rundir: Path) -> str:
    zones = "".join(f'  - domain: "{z.name[:-len("zone")]}"\n    file: "{z}"\n    acl: xfr\n'
                    for z in ZONES)
    return f"""\
acl:
  - id: xfr
    address: 127.0.0.1
    action: transfer
template:
  - id: default
    storage: "{rundir}"
    journal-content: none
    zonefile-sync: -1
    semantic-checks: off
zone:
{zones}"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("xfrproto")
    config = '[transfer]\nallow = ["127.0.0.0/8"]\n'
    with knot(knot_body, free_port(), ORIGIN) as (kd, _), \
            geodns(config, DATA_DIR / "interop", workdir=tmp, ready_name=ORIGIN) as g:
        yield kd.port, g.port


def transfer(port: int, q: dns.message.Message) -> list[dns.message.Message]:
    with tcp_connect(port) as s:
        wire = q.to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        msgs = [dns.message.from_wire(tcp_read_message(s, check=False), xfr=True)]
        soas = sum(1 for r in msgs[0].answer for _ in r if r.rdtype == 6)
        while msgs[0].rcode() == 0 and soas < 2 and len(msgs[0].answer) and \
                q.question[0].rdtype == 252:
            msgs.append(dns.message.from_wire(tcp_read_message(s, check=False), xfr=True))
            soas += sum(1 for r in msgs[-1].answer for _ in r if r.rdtype == 6)
    return msgs


def records(msgs: list[dns.message.Message]) -> list[str]:
    return sorted(line.lower() for m in msgs for r in m.answer
                  for line in r.to_text().splitlines())


@pytest.mark.parametrize("origin", ["interop.example.", "child.interop.example.",
                                    "other.example."])
def test_axfr_same_records_and_expire_as_knot(servers, origin: str) -> None:  # type: ignore[no-untyped-def]
    kport, gport = servers
    q = dns.message.make_query(origin, "AXFR", use_edns=0, options=[expire.request_option()])
    theirs, ours = transfer(kport, q), transfer(gport, q)
    assert records(ours) == records(theirs)
    assert ours[0].rcode() == theirs[0].rcode() == dns.rcode.NOERROR
    assert expire.value(ours[0]) == expire.value(theirs[0]) is not None
    assert ours[0].flags & dns.flags.AA  # RFC 5936 2.2.1 (Knot leaves AA clear)


def test_ixfr_up_to_date_is_the_soa_alone_like_knot(servers) -> None:  # type: ignore[no-untyped-def]
    kport, gport = servers
    soa = ask_other(kport, dns.message.make_query(ORIGIN, "SOA")).answer[0]
    q = dns.message.make_query(ORIGIN, "IXFR")
    q.authority.append(soa)
    theirs, ours = transfer(kport, q), transfer(gport, q)
    assert records(ours) == records(theirs) and len(records(ours)) == 1


def _other_opcode(port: int, opcode: int) -> dns.message.Message:
    if opcode == dns.opcode.UPDATE:
        q: dns.message.Message = dns.update.UpdateMessage(ORIGIN)
        q.add("x", 60, "A", "192.0.2.1")  # type: ignore[attr-defined]
    else:
        q = dns.message.make_query(ORIGIN, "SOA")
        q.flags = dns.flags.AA if opcode == dns.opcode.NOTIFY else 0
        q.set_opcode(opcode)
    q.use_edns(0, payload=1232, options=[dns.edns.GenericOption(65001, b"x")])
    return ask_other(port, q)


@pytest.mark.parametrize(("opcode", "ours_rcode"), [
    (dns.opcode.NOTIFY, dns.rcode.REFUSED), (dns.opcode.UPDATE, dns.rcode.NOTIMP),
    (dns.opcode.STATUS, dns.rcode.NOTIMP), (3, dns.rcode.NOTIMP)])
def test_other_opcodes_keep_opt_like_knot(servers, opcode: int, ours_rcode: int) -> None:  # type: ignore[no-untyped-def]
    kport, gport = servers
    theirs, ours = _other_opcode(kport, opcode), _other_opcode(gport, opcode)
    assert ours.rcode() == ours_rcode
    assert ours.opcode() == theirs.opcode() == opcode
    assert (ours.edns, theirs.edns) == (0, 0)  # OPT kept, as Knot does
    assert not ours.options  # unknown options are not echoed (nor by Knot)
    assert not theirs.options
    assert [q.to_text() for q in ours.question] == [q.to_text() for q in theirs.question]
