"""The query files of each benchmark mix.

Static names repeat (a short file that dnsperf loops over). Everything meant to miss
caches never repeats: the file holds one query per expected answer of the whole run
(duration x an upper bound of the rate, ``--max-qps``) and dnsperf reads it once
(``-n 1``); if a server were faster than that bound, dnsperf would stop early and
the run is flagged, never looped."""

from __future__ import annotations

import argparse
import ipaddress
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone

from benchlib.clients import (
    GEO_ORIGIN,
    GEO_QNAME,
    KNOWN_CLIENTS,
    LocatedIndex,
    locate,
    sample_clients,
    sample_diverse,
    v4_net_text,
)
from benchlib.plain import DYNA_RE, PLAIN_ORIGIN, plain_queries, plain_zone_text, zone_origin
from benchlib.procs import BenchError, write
from benchlib.wire import BinaryWriter, EcsQueries, plain_query

MIN_DISTINCT = 200_000  # distinct clients / names of the never-repeating mixes, at least


@dataclass
class Workload:
    datafile: Path
    binary: bool
    queries: int  # messages in the file
    distinct: int  # distinct messages among them
    repeats: bool  # dnsperf loops over the file (-l alone) or reads it once (-n 1)
    summary: str
    plain_lines: list[str] = field(default_factory=list)  # static: checked against NSD
    known: list[tuple[str, str, str]] = field(default_factory=list)  # net, where, POP
    held_out: list[tuple[str, str]] = field(default_factory=list)  # net, nearest POP
    held_out_names: list[tuple[str, str]] = field(default_factory=list)  # name, type


def never_repeating_count(args: argparse.Namespace) -> int:
    """Queries needed so that a run of ``--duration`` never runs out at ``--max-qps``."""
    return max(MIN_DISTINCT, math.ceil(args.duration * args.max_qps))


def known_clients(reader: Any) -> list[tuple[str, str, str]]:
    known = []
    for net, where in KNOWN_CLIENTS:
        client = locate(reader, net.split("/")[0])
        known.append((net, where, client.pop.name if client else "?"))
    return known


def held_out_clients(reader: Any, nets24: list[int]) -> list[tuple[str, str]]:
    out = []
    for net24 in nets24:
        client = locate(reader, v4_net_text(net24).split("/")[0])
        if client is not None:
            out.append((client.network, client.pop.name))
    return out


def interleave(rnd: random.Random, streams: list[tuple[Iterator[bytes], int]]) -> Iterator[bytes]:
    """Exactly ``count`` messages from each stream, in a random order."""
    left = [count for _, count in streams]
    total = sum(left)
    while total:
        r = rnd.randrange(total)
        for i, n in enumerate(left):
            if r < n:
                left[i] -= 1
                total -= 1
                yield next(streams[i][0])
                break
            r -= n


class RandomNames:
    """Distinct pseudo-random labels under ``origin``: i -> (i * odd) mod 2^48 XOR salt
    is a bijection, so names never repeat and need no set to check."""

    MULT = 0x9E3779B97F4B
    MOD = 1 << 48

    def __init__(self, origin: str, seed: int) -> None:
        self.origin = origin
        self.salt = random.Random(seed).getrandbits(48)

    def name(self, i: int) -> str:
        return f"{((i * self.MULT) % self.MOD) ^ self.salt:012x}.{self.origin}"

    def wires(self, start: int, count: int, qtype: str = "A") -> Iterator[bytes]:
        for i in range(start, start + count):
            yield plain_query(self.name(i), qtype)


def describe(path: Path, count: int) -> str:
    return f"{count} queries, {path.stat().st_size / 1e6:.0f} MB of dnsperf -B input"


# --------------------------------------------------------------------------- (a) static


def build_static(args: argparse.Namespace, tmp: Path) -> tuple[Workload, list[tuple[str, Path]]]:
    zonedir = tmp / "zones"
    zonedir.mkdir(parents=True, exist_ok=True)
    if args.zone:
        src = Path(args.zone)
        origin = zone_origin(src)
        # DYNA (steered) records are geodns-only: the references cannot load them.
        kept = [ln for ln in src.read_text().splitlines() if not DYNA_RE.search(ln)]
        dropped = len(src.read_text().splitlines()) - len(kept)
        zone_file = write(zonedir / f"{origin}.zone", "\n".join(kept) + "\n")
        if dropped:
            print(f"{src}: left out {dropped} DYNA record(s), which only geodns knows")
    else:
        origin = PLAIN_ORIGIN
        zone_file = write(zonedir / f"{origin}.zone", plain_zone_text(origin))
    lines = plain_queries(zone_file, origin, args.seed)
    datafile = write(tmp / "static-queries.txt", "\n".join(lines) + "\n")
    kinds = Counter(
        "NXDOMAIN" if line.startswith("nxdomain-") else line.split()[1] for line in lines
    )
    summary = (
        f"zone {origin}, {len(set(lines))} distinct queries in a {len(lines)}-line file "
        f"(repeated): {dict(kinds)}"
    )
    work = Workload(datafile, False, len(lines), len(set(lines)), True, summary, lines)
    return work, [(origin, zone_file)]


# --------------------------------------------------------------------------- (b) steered


def build_cache_friendly(args: argparse.Namespace, tmp: Path, reader: Any) -> Workload:
    """The 5,000 located /24s of the original geo run, repeated: a packet-cache replay."""
    t0 = time.monotonic()
    clients = sample_clients(reader, args.geo_clients + args.verify_sample, args.seed)
    timed, held = clients[: args.geo_clients], clients[args.geo_clients :]
    path = tmp / "cache-friendly.bin"
    writer = BinaryWriter(path)
    queries = EcsQueries(GEO_QNAME, "A")
    for c in timed:
        writer.add(queries.v4(int(ipaddress.IPv4Address(c.address)) >> 8))
    writer.close()
    conts = Counter(c.continent for c in timed)
    summary = (
        f"{len(timed)} client /24s repeated ({time.monotonic() - t0:.1f} s, seed {args.seed}), "
        f"by continent {dict(conts)}; {describe(path, writer.count)}"
    )
    return Workload(
        path, True, writer.count, len(timed), True, summary,
        known=known_clients(reader),
        held_out=[(c.network, c.pop.name) for c in held],
    )  # fmt: skip


def build_diverse(
    args: argparse.Namespace, tmp: Path, reader: Any, index: LocatedIndex
) -> Workload:
    """``www A`` with ECS, one distinct client per query: /24s and some /56s."""
    t0 = time.monotonic()
    count = never_repeating_count(args)
    n6 = round(count * args.v6_share)
    n4 = max(MIN_DISTINCT, count - n6)
    clients = sample_diverse(index, n4 + args.verify_sample, n6, args.seed + 10)
    timed4, held4 = clients.v4[:n4], clients.v4[n4:]
    queries = EcsQueries(GEO_QNAME, "A")
    rnd = random.Random(args.seed + 11)
    path = tmp / "steered-diverse.bin"
    writer = BinaryWriter(path)
    writer.add_all(
        interleave(
            rnd,
            [
                ((queries.v4(n) for n in timed4), n4),
                ((queries.v6(n) for n in clients.v6), n6),
            ],
        )
    )
    writer.close()
    summary = (
        f"www A with ECS from {n4} distinct located /24s (by continent "
        f"{clients.by_continent}) and {n6} distinct located /56s, each asked once "
        f"({time.monotonic() - t0:.0f} s to build, seed {args.seed + 10}); "
        f"{describe(path, writer.count)}: enough for {args.duration:g} s at "
        f"{args.max_qps:.0f} qps"
    )
    return Workload(
        path, True, writer.count, writer.count, False, summary,
        known=known_clients(reader),
        held_out=held_out_clients(reader, held4),
    )  # fmt: skip


# --------------------------------------------------------------------------- (c) random names


def build_random(args: argparse.Namespace, tmp: Path, origin: str) -> Workload:
    """A random-subdomain flood: distinct names under ``origin`` (NXDOMAIN)."""
    count = never_repeating_count(args)
    names = RandomNames(origin, args.seed + 30)
    path = tmp / "random-names.bin"
    writer = BinaryWriter(path)
    writer.add_all(names.wires(0, count))
    writer.close()
    held = [(names.name(count + i), "A") for i in range(50)]
    summary = (
        f"{count} distinct random names under {origin} (A, NXDOMAIN), each asked once, "
        f"e.g. {names.name(0)}; {describe(path, writer.count)}"
    )
    return Workload(path, True, writer.count, writer.count, False, summary,
                    held_out_names=held)  # fmt: skip


# --------------------------------------------------------------------------- (d) mix


MIX_SHARES = {"steered": 0.70, "static": 0.20, "random": 0.10}


def static_names(zone_file: Path, origin: str) -> list[tuple[str, str]]:
    """Every (name, type) of the zone's plain records, DYNA lines left out."""
    text = "\n".join(ln for ln in zone_file.read_text().splitlines() if not DYNA_RE.search(ln))
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    out = []
    for name, node in zone.nodes.items():
        for rds in node.rdatasets:
            rtype = dns.rdatatype.to_text(rds.rdtype)
            qtype = "A" if rtype == "CNAME" else rtype
            out.append((name.to_text(omit_final_dot=True), qtype))
    return sorted(set(out))


def build_mix(
    args: argparse.Namespace, tmp: Path, reader: Any, index: LocatedIndex, zones: Path
) -> Workload:
    """70 % steered (www and api with ECS from distinct clients), 20 % static names of
    the shipped zone (repeated, as real static traffic is), 10 % random names."""
    t0 = time.monotonic()
    zone_file = next(
        (f for f in sorted(zones.glob("*.zone")) if zone_origin(f) == GEO_ORIGIN), None
    )
    if zone_file is None:
        raise BenchError(f"no {GEO_ORIGIN} zone in {zones} (--geodns-zones)")
    count = never_repeating_count(args)
    n_steer = round(count * MIX_SHARES["steered"])
    n_static = round(count * MIX_SHARES["static"])
    n_random = count - n_steer - n_static
    n6 = round(n_steer * args.v6_share)
    clients = sample_diverse(index, n_steer - n6, n6, args.seed + 20)
    www, api = EcsQueries(GEO_QNAME, "A"), EcsQueries(f"api.{GEO_ORIGIN}", "A")
    rnd = random.Random(args.seed + 21)

    def steered() -> Iterator[bytes]:
        pick: Callable[[], EcsQueries] = lambda: www if rnd.random() < 0.75 else api  # noqa: E731
        v4, v6 = iter(clients.v4), iter(clients.v6)
        for k in interleave(rnd, [((b"4" for _ in range(len(clients.v4))), len(clients.v4)),
                                  ((b"6" for _ in range(n6)), n6)]):  # fmt: skip
            yield pick().v4(next(v4)) if k == b"4" else pick().v6(next(v6))

    statics = static_names(zone_file, GEO_ORIGIN)
    static_wires = [plain_query(n, t) for n, t in statics]

    def static() -> Iterator[bytes]:
        while True:
            yield static_wires[rnd.randrange(len(static_wires))]

    names = RandomNames(GEO_ORIGIN, args.seed + 22)
    path = tmp / "mix.bin"
    writer = BinaryWriter(path)
    writer.add_all(
        interleave(
            rnd,
            [
                (steered(), n_steer),
                (static(), n_static),
                (names.wires(0, n_random), n_random),
            ],
        )
    )
    writer.close()
    summary = (
        f"{n_steer} steered (www 3/4, api 1/4, ECS from distinct clients: {n_steer - n6} /24s, "
        f"{n6} /56s), {n_static} static ({len(statics)} names of {zone_file.name}, "
        f"repeated), {n_random} distinct random names "
        f"({time.monotonic() - t0:.0f} s to build); {describe(path, writer.count)}"
    )
    return Workload(
        path, True, writer.count, writer.count - n_static + len(statics), False, summary,
        known=known_clients(reader),
        held_out_names=[(n, t) for n, t in statics if t != "SOA"][:5],
    )  # fmt: skip
