"""The static workload: a generated plain zone and a short query file of existing
names, NXDOMAIN and MX/TXT (repeated: static answers are what caches are for), and the
query-by-query comparison of geodns's answers with the reference's."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone

from benchlib.procs import LOCALHOST, BenchError

PLAIN_ORIGIN = "bench.example"
DYNA_RE = re.compile(r"^[^;]*\sDYNA\s", re.IGNORECASE)


def plain_zone_text(origin: str) -> str:
    lines = [
        f"$ORIGIN {origin}.",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        '@ IN TXT "v=spf1 -all"',
        "@ IN MX 10 mail",
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 192.0.2.54",
        "mail IN A 192.0.2.25",
        "static IN A 192.0.2.200",
    ]
    for i in range(240):
        net = "198.51.100" if i < 120 else "203.0.113"
        lines.append(f"host{i:03d} IN A {net}.{i % 120 + 1}")
        if i % 4 == 0:
            lines.append(f"host{i:03d} IN AAAA 2001:db8::{i + 1:x}")
    for i in range(20):
        lines.append(f"svc{i:02d} IN MX 10 mail")
        lines.append(f'svc{i:02d} IN TXT "bench service {i}"')
    return "\n".join(lines) + "\n"


def zone_origin(path: Path) -> str:
    m = re.search(r"^\$ORIGIN\s+(\S+)", path.read_text(), re.MULTILINE)
    origin = m.group(1) if m else path.name.removesuffix(".zone")
    return origin.rstrip(".").lower()


def plain_queries(zone_file: Path, origin: str, seed: int, total: int = 1000) -> list[str]:
    """Query lines ``name type``: 60 % A, 15 % AAAA, 15 % NXDOMAIN, 10 % MX/TXT."""
    zone = dns.zone.from_file(str(zone_file), origin=origin, relativize=False)
    pools: dict[str, list[str]] = {"A": [], "AAAA": [], "MXTXT": []}
    for name, node in zone.nodes.items():
        text = name.to_text(omit_final_dot=True)
        for rds in node.rdatasets:
            rtype = dns.rdatatype.to_text(rds.rdtype)
            if rtype in ("A", "AAAA"):
                pools[rtype].append(f"{text} {rtype}")
            elif rtype in ("MX", "TXT"):
                pools["MXTXT"].append(f"{text} {rtype}")
    rnd = random.Random(seed)
    pools["NX"] = [
        f"nxdomain-{rnd.getrandbits(32):08x}.{origin} {'AAAA' if i % 3 == 2 else 'A'}"
        for i in range(max(1, total // 16))
    ]
    if not pools["A"]:
        raise BenchError(f"{zone_file} has no A records to query")
    shares = {"A": 0.60, "AAAA": 0.15, "NX": 0.15, "MXTXT": 0.10}
    counts = {k: int(total * v) if pools[k] else 0 for k, v in shares.items()}
    counts["A"] += total - sum(counts.values())
    lines: list[str] = []
    for kind, count in counts.items():
        pool = sorted(set(pools[kind]))
        rnd.shuffle(pool)
        lines += [pool[i % len(pool)] for i in range(count)]
    rnd.shuffle(lines)
    return lines


def answer_signature(resp: dns.message.Message) -> str:
    rrs = sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
        for rrset in resp.answer
        for rd in rrset
    )
    aa = "aa" if resp.flags & dns.flags.AA else "no-aa"
    return f"{dns.rcode.to_text(resp.rcode())} {aa} [{'; '.join(rrs)}]"


def collect_answers(port: int, lines: list[str]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for line in sorted(set(lines)):
        name, rtype = line.split()
        query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
        query.flags &= ~dns.flags.RD
        try:
            resp = dns.query.udp(query, LOCALHOST, port=port, timeout=2)
        except (OSError, dns.exception.DNSException) as exc:
            answers[line] = f"error {type(exc).__name__}"
            continue
        answers[line] = answer_signature(resp)
    return answers


def verify_plain(
    name: str, port: int, lines: list[str], answers: dict[str, dict[str, str]]
) -> dict[str, Any]:
    answers[name] = collect_answers(port, lines)
    got = answers[name]
    rcodes = Counter(sig.split()[0] for sig in got.values())
    print(f"  {len(got)} distinct queries answered: {dict(rcodes)}")
    return {"distinct_queries": len(got), "rcodes": dict(rcodes)}


def compare_plain(answers: dict[str, dict[str, str]]) -> dict[str, Any]:
    """geodns's answers compared with the first reference that ran."""
    if "geodns" not in answers:
        return {}
    refs = [s for s in answers if s != "geodns"]
    if not refs:
        return {}
    ref = refs[0]
    mism = [q for q in answers[ref] if answers["geodns"].get(q) != answers[ref][q]]
    total = len(answers[ref])
    print(f"\nanswers geodns vs {ref}: {total - len(mism)}/{total} identical (rcode, AA, answer)")
    for q in mism[:8]:
        print(f"  {q}:\n    geodns: {answers['geodns'].get(q)}\n    {ref}: {answers[ref][q]}")
    return {"reference": ref, "identical": total - len(mism), "total": total, "differ": mism}
