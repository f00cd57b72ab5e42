"""Answer checks made before timing: a server that answers wrongly is not benchmarked.

They use clients and names held out of the timed query files, so checking never warms
a cache for the run that follows."""

from __future__ import annotations

from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from benchlib.clients import GEO_QNAME, POP_BY_IP
from benchlib.procs import LOCALHOST, BenchError


def ecs_query(client_net: str, qname: str = GEO_QNAME) -> dns.message.Message:
    addr, plen = client_net.split("/")
    ecs = dns.edns.ECSOption(addr, int(plen))
    query = dns.message.make_query(qname, "A", use_edns=0, payload=1232, options=[ecs])
    query.flags &= ~dns.flags.RD
    return query


def geo_answer(port: int, client_net: str) -> tuple[str, str]:
    """(answer text, ECS scope) for www.example.com A asked for ``client_net``."""
    try:
        resp = dns.query.udp(ecs_query(client_net), LOCALHOST, port=port, timeout=2)
    except (OSError, dns.exception.DNSException) as exc:
        return f"error {type(exc).__name__}", "-"
    scope = "-"
    for opt in resp.options:
        if isinstance(opt, dns.edns.ECSOption):
            scope = f"/{opt.scopelen}"
    ips = sorted(
        rd.address
        for rrset in resp.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rd in rrset
    )
    if not ips:
        return f"{dns.rcode.to_text(resp.rcode())} no A", scope
    return ",".join(f"{ip}({POP_BY_IP.get(ip, '?')})" for ip in ips), scope


def verify_geo(
    port: int, known: list[tuple[str, str, str]], sample: list[tuple[str, str]]
) -> dict[str, Any]:
    """Answers for the known clients (printed) and agreement with the nearest POP for
    ``sample`` = (network, expected POP); no A answer at all is a failure."""
    rows = []
    print(f"  {'client':<18} {'where':<15} {'expected':<9} {'answer':<28} scope")
    for net, where, expected in known:
        answer, scope = geo_answer(port, net)
        rows.append({"client": net, "expected": expected, "answer": answer, "scope": scope})
        print(f"  {net:<18} {where:<15} {expected:<9} {answer:<28} {scope}")
    if not any("(" in r["answer"] for r in rows):
        raise BenchError(f"no A answer for {GEO_QNAME} with ECS: {rows[0]['answer']}")
    agree = 0
    for net, expected in sample:
        answer, _ = geo_answer(port, net)
        agree += f"({expected})" in answer
    pct = 100.0 * agree / max(len(sample), 1)
    print(
        f"  nearest-POP agreement: {agree}/{len(sample)} held-out clients ({pct:.1f} %)"
        if sample
        else "  (no held-out clients checked)"
    )
    return {"known_clients": rows, "agree": agree, "checked": len(sample)}


def verify_rcodes(port: int, queries: list[tuple[str, str]], expect: str) -> dict[str, Any]:
    """Every query must get rcode ``expect`` with the AA bit (an authoritative answer)."""
    got: dict[str, int] = {}
    for name, rtype in queries:
        query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
        query.flags &= ~dns.flags.RD
        try:
            resp = dns.query.udp(query, LOCALHOST, port=port, timeout=2)
        except (OSError, dns.exception.DNSException) as exc:
            raise BenchError(f"no answer for {name} {rtype}: {type(exc).__name__}") from None
        key = dns.rcode.to_text(resp.rcode()) + ("" if resp.flags & dns.flags.AA else " no-AA")
        got[key] = got.get(key, 0) + 1
    print(f"  {len(queries)} queries checked: {got} (expected {expect})")
    if got != {expect: len(queries)}:
        raise BenchError(f"expected {expect} with AA for every held-out query, got {got}")
    return {"checked": len(queries), "rcodes": got}
