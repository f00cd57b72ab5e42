"""A bounded fuzz run against a real `geodns serve` over UDP and TCP.

Mutated queries, lying header counts and TCP length prefixes, malformed OPT, ECS and
cookie (option 10) options and truncated packets, with a well-formed query after every
batch.  Asserted: every well-formed query is answered correctly, every response parses
with dnspython and dnslib (counts agree), UDP answers fit 1232 bytes, the process stays
alive and logs no exception.

Deterministic: one seeded generator (``GEODNS_FUZZ_SEED`` picks another seed; the seed
is in every failure message).  Bounded: about 20 s on a 2-core machine; a slow
machine stops early at the time caps rather than time out.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import time
from collections.abc import Iterator

import dns.message
import pytest

from tests.fuzz.packets import fuzz_packet, tcp_stream, well_formed
from tests.helpers.packets import ecs_option, encode_name, raw_header, raw_opt, raw_question
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.queries import tcp_connect, tcp_query
from tests.helpers.servers import ServerProcess, geodns_server
from tests.helpers.wirecheck import dnslib_check, header_fields

pytestmark = pytest.mark.timeout(180)

SEED = int(os.environ.get("GEODNS_FUZZ_SEED", "20261201"))
UDP_BATCHES, UDP_BATCH = 1000, 60  # 60,000 hostile datagrams
TCP_CONNECTIONS = 5000
UDP_SECONDS, TCP_SECONDS = 20.0, 15.0  # caps for slow machines

# (name, qtype, with ECS, expected rcode, answer expected)
PROBES = [
    ("static.example.com.", 1, False, 0, True),
    ("www.example.com.", 1, True, 0, True),
    ("api.example.com.", 28, True, 0, True),
    ("nothere.example.com.", 1, False, 3, False),
    ("big.interop.example.", 1, False, 0, True),
    ("x.wild.interop.example.", 16, False, 0, True),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    zones = tmp_path_factory.mktemp("fuzz-zones")
    shutil.copy(REPO_ROOT / "zones" / "example.com.zone", zones)
    for f in (DATA_DIR / "interop").glob("*.zone"):
        shutil.copy(f, zones)
    with geodns_server(zones, ["--config", str(REPO_ROOT / "geodns.toml")]) as srv:
        yield srv


def probe(qid: int, n: int) -> tuple[bytes, tuple[str, int, bool, int, bool]]:
    spec = PROBES[n % len(PROBES)]
    name, qtype, with_ecs = spec[:3]
    opts = [ecs_option(1, 24, 0, bytes([81, 2, 69]))] if with_ecs else []
    return raw_header(qid, ar=1) + raw_question(name, qtype) + raw_opt(options=opts), spec


def check_probe(reply: bytes, query: bytes, spec: tuple[str, int, bool, int, bool],
                where: str) -> None:
    name, qtype, _, rcode, answer = spec
    h = header_fields(reply)
    assert h["qr"] == 1 and h["rcode"] == rcode, f"{where}: {name} got {h}"
    assert reply[12:12 + len(encode_name(name)) + 4] == query[12:12 + len(encode_name(name))
                                                               + 4], f"{where}: question"
    assert bool(h["an"]) == answer, f"{where}: {name} {qtype} answers {h['an']}"


def _utf8_labels(msg: dns.message.Message) -> bool:
    names = [q.name for q in msg.question]
    for section in (msg.answer, msg.authority, msg.additional):
        names += [rrset.name for rrset in section]
    try:
        for name in names:
            for label in name.labels:
                label.decode()
    except UnicodeDecodeError:
        return False
    return True


def check_response(data: bytes, where: str, udp: bool) -> None:
    """dnspython must parse every response exactly (counts, no trailing bytes); dnslib
    too, except that dnslib rejects labels that are not UTF-8, which DNS allows (RFC
    2181 11) and which the server rightly echoes from a fuzzed question."""
    wire = data
    if len(data) > 2 and (data[2] >> 3) & 0xF == 5:
        # dnspython reads an UPDATE's first section as the zone section, which must be
        # SOA; a NOTIMP for an UPDATE echoes whatever question came: check the structure
        # of the same bytes with opcode QUERY.
        wire = data[:2] + bytes([data[2] & 0x87]) + data[3:]
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=False)
    except Exception as exc:
        raise AssertionError(f"{where}: dnspython cannot parse {data.hex()}: {exc!r}") from None
    if _utf8_labels(msg):
        try:
            dnslib_check(wire)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    assert header_fields(data)["qr"] == 1, f"{where}: QR not set: {data.hex()}"
    if udp:
        assert len(data) <= 1232, f"{where}: {len(data)}-byte UDP answer: {data[:64].hex()}"


def test_fuzz_udp(server: ServerProcess) -> None:
    rng = random.Random(SEED)
    sent = answered = 0
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect(("127.0.0.1", server.port))
        for batch in range(UDP_BATCHES):
            if time.monotonic() - start > UDP_SECONDS:
                break
            where = f"seed {SEED}, udp batch {batch}"
            for _ in range(UDP_BATCH):
                s.send(fuzz_packet(rng))
            sent += UDP_BATCH
            qid = 0xA000 + batch % 0x1000
            query, spec = probe(qid, batch)
            s.send(query)
            deadline = time.monotonic() + 3.0
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    raise AssertionError(f"{where}: well-formed {spec[0]} not answered; "
                                         f"server alive: {server.alive()}") from None
                check_response(data, where, udp=True)
                answered += 1
                if data[:2] == query[:2] and data[12:14] == query[12:14]:
                    check_probe(data, query, spec, where)
                    break
    print(f"fuzz udp, seed {SEED}: {sent} datagrams, {answered} responses, "
          f"{time.monotonic() - start:.1f} s")
    assert sent >= 5000, f"only {sent} datagrams in {UDP_SECONDS} s"
    assert answered > sent // 10  # the fuzz reaches the answer path, not only drops
    assert server.alive()
    assert_clean_log(server)


def test_fuzz_tcp(server: ServerProcess) -> None:
    rng = random.Random(SEED + 1)
    done = frames = 0
    start = time.monotonic()
    for conn in range(TCP_CONNECTIONS):
        if time.monotonic() - start > TCP_SECONDS:
            break
        where = f"seed {SEED}, tcp connection {conn}"
        stream = tcp_stream(rng)
        got = bytearray()
        with tcp_connect(server.port, timeout=5.0) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            i = 0
            while i < len(stream):
                n = rng.choice((1, 2, 3, 7, 64, len(stream)))
                s.sendall(stream[i:i + n])
                i += n
            s.shutdown(socket.SHUT_WR)
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    raise AssertionError(f"{where}: connection reset") from None
                except TimeoutError:
                    raise AssertionError(f"{where}: no EOF 5 s after ours") from None
                if not chunk:
                    break
                got += chunk
        while got:
            assert len(got) >= 2, f"{where}: a stray byte after the last answer"
            (n,) = struct.unpack("!H", got[:2])
            assert len(got) >= n + 2, f"{where}: answer cut short ({len(got) - 2} of {n})"
            check_response(bytes(got[2:n + 2]), where, udp=False)
            del got[:n + 2]
            frames += 1
        done += 1
        if conn % 10 == 0:
            query, spec = probe(0xB000 + conn % 0x1000, conn // 10)
            check_probe(tcp_query(server.port, query, timeout=3.0), query, spec, where)
    print(f"fuzz tcp, seed {SEED}: {done} connections, {frames} responses, "
          f"{time.monotonic() - start:.1f} s")
    assert done >= 300, f"only {done} connections in {TCP_SECONDS} s"
    assert frames > 0
    assert server.alive()
    assert_clean_log(server)


def test_well_formed_generator_is_answered(server: ServerProcess) -> None:
    """The generator's well-formed queries really are: each gets an answer (so the fuzz
    mutates queries that reach every part of the answer path)."""
    rng = random.Random(SEED + 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", server.port))
        s.settimeout(3.0)
        for i in range(300):
            query = well_formed(rng, qid=i)
            s.send(query)
            while True:
                data = s.recv(65535)
                if data[:2] == query[:2]:
                    break
            check_response(data, f"seed {SEED + 2}, query {i}", udp=True)
            rcode = header_fields(data)["rcode"]
            assert rcode != 2, f"SERVFAIL for a well-formed query: {query.hex()}"
    assert_clean_log(server)


def assert_clean_log(server: ServerProcess) -> None:
    log = server.stderr_text()
    for bad in ("Traceback", " ERROR ", "Exception", "failure"):
        assert bad not in log, f"seed {SEED}: the server logged {bad!r}:\n{log[-3000:]}"
