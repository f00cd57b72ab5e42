"""Seeded generators of hostile DNS input: mutated queries, lying counts, malformed
OPT/ECS/cookie options, truncated packets, and TCP streams with lying length prefixes.
Everything comes from one ``random.Random``, so a seed reproduces a run exactly."""

from __future__ import annotations

import random
import struct

from tests.helpers.packets import ecs_option, raw_header, raw_opt, raw_question

NAMES = [
    "example.com.", "www.example.com.", "api.example.com.", "static.example.com.",
    "docs.example.com.", "nothere.example.com.", "_explain.www.example.com.",
    "_explain.api.example.com.", "ns1.example.com.", "interop.example.",
    "big.interop.example.", "bigtxt.interop.example.", "huge.interop.example.",
    "medium.interop.example.", "x.wild.interop.example.", "exists.wild.interop.example.",
    "a.b.cw.interop.example.", "loop1.interop.example.", "c1.interop.example.",
    "host.ent.deep.interop.example.", "ent.deep.interop.example.", "child.interop.example.",
    "www.child.interop.example.", "x.sub.interop.example.", "tochild.other.example.",
    "MiXeD.interop.example.", "nozone.invalid.", ".",
]
TYPES = [1, 28, 16, 15, 2, 6, 5, 255, 33, 43, 252, 251, 0, 65535, 41, 48, 65280]
PAYLOADS = [0, 1, 511, 512, 513, 1232, 1400, 4096, 65535]
COOKIE = 10
PADDING = 12


def _case(rng: random.Random, name: str) -> str:
    """Random 0x20 letter case (the server must echo the question bytes)."""
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def ecs(rng: random.Random, valid: bool = True) -> tuple[int, bytes]:
    family = rng.choice((1, 2))
    width = 32 if family == 1 else 128
    source = rng.randint(0, width)
    addr = bytearray(rng.randbytes((source + 7) // 8))
    if source % 8 and addr:
        addr[-1] &= (0xFF << (8 - source % 8)) & 0xFF
    if valid:
        return ecs_option(family, source, 0, bytes(addr))
    bad = rng.randrange(6)
    if bad == 0:
        family = rng.choice((0, 3, 0xFFFF))
    elif bad == 1:
        source = width + rng.randint(1, 100)
    elif bad == 2:
        addr += rng.randbytes(rng.randint(1, 20))
    elif bad == 3 and addr:
        addr = addr[:-1]
    elif bad == 4:
        return ecs_option(family, source, rng.randint(1, 255), bytes(addr))
    else:
        return (8, rng.randbytes(rng.randint(0, 3)))  # shorter than the fixed part
    return (8, struct.pack("!HBB", family, source & 0xFF, 0) + bytes(addr))


def cookie(rng: random.Random) -> tuple[int, bytes]:
    """RFC 7873: 8 bytes client cookie, or 8 + 8..32 with a server cookie; any other
    length is malformed (and must get FORMERR, never a crash)."""
    length = rng.choice((8, 16, 24, 40, 0, 1, 7, 9, 15, 41, 100))
    return (COOKIE, rng.randbytes(length))


def options(rng: random.Random, valid: bool) -> list[tuple[int, bytes]]:
    opts: list[tuple[int, bytes]] = []
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        kind = rng.randrange(5)
        if kind == 0:
            opts.append(ecs(rng, valid or rng.random() < 0.5))
        elif kind == 1:
            opts.append(cookie(rng) if not valid else (COOKIE, rng.randbytes(
                rng.choice((8, 16, 24, 40)))))
        elif kind == 2:
            opts.append((PADDING, bytes(rng.randint(0, 300))))
        elif kind == 3:
            opts.append((rng.randint(0, 65535), rng.randbytes(rng.randint(0, 40))))
        else:
            opts.append((COOKIE, rng.randbytes(8)))
    return opts


def well_formed(rng: random.Random, qid: int | None = None,
                name: str | None = None, qtype: int | None = None) -> bytes:
    """A valid query (header, question, maybe OPT with valid options)."""
    qid = rng.randrange(65536) if qid is None else qid
    name = _case(rng, rng.choice(NAMES) if name is None else name)
    qtype = rng.choice(TYPES[:12]) if qtype is None else qtype
    edns = rng.random() < 0.7
    head = raw_header(qid, rd=rng.randrange(2), ar=1 if edns else 0)
    packet = head + raw_question(name, qtype)
    if edns:
        packet += raw_opt(rng.choice(PAYLOADS), do=rng.random() < 0.3,
                          options=options(rng, True))
    return packet


def malformed_opt(rng: random.Random) -> bytes:
    """A query whose OPT record (or its options) lies or breaks a rule."""
    name = _case(rng, rng.choice(NAMES))
    opts = options(rng, False) or [cookie(rng)]
    opt = bytearray(raw_opt(rng.choice(PAYLOADS), do=rng.random() < 0.5, options=opts,
                            version=rng.choice((0, 0, 0, 1, 255))))
    ar = 1
    lie = rng.randrange(7)
    if lie == 0:  # RDLEN longer or shorter than the options
        struct.pack_into("!H", opt, 9, max(0, len(opt) - 11 + rng.choice((-3, -1, 1, 7, 500))))
    elif lie == 1 and len(opt) > 15:  # an option length that overruns RDLEN
        struct.pack_into("!H", opt, 13, rng.choice((0xFFFF, len(opt), 1)))
    elif lie == 2:  # two OPT records
        opt += raw_opt(1232, options=[cookie(rng)])
        ar = 2
    elif lie == 3:  # OPT with a non-root owner name
        opt = bytearray(b"\x01x") + opt
    elif lie == 4:  # extended RCODE bits set in a query
        opt[5] = rng.randint(1, 255)
    elif lie == 5:  # OPT cut short
        opt = opt[:rng.randint(1, max(1, len(opt) - 1))]
    head = raw_header(rng.randrange(65536), ar=ar)
    if rng.random() < 0.2:  # OPT in the answer section instead
        head = raw_header(rng.randrange(65536), an=ar)
    return head + raw_question(name, rng.choice(TYPES)) + bytes(opt)


def lying_counts(rng: random.Random) -> bytes:
    """A valid query whose header counts disagree with what follows."""
    packet = bytearray(well_formed(rng))
    for off in rng.sample((4, 6, 8, 10), rng.randint(1, 4)):
        struct.pack_into("!H", packet, off, rng.choice((0, 1, 2, 3, 255, 0xFFFF,
                                                        rng.randrange(65536))))
    if rng.random() < 0.5:  # and records that may or may not be there
        packet += rng.randbytes(rng.randint(1, 64))
    return bytes(packet)


def mutate(rng: random.Random, packet: bytes) -> bytes:
    """1-4 random edits: bit flips, byte sets, inserts, deletes, cuts, duplicates."""
    data = bytearray(packet)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 0x3F, 0x40, 0xC0, 0xFF,
                                                         rng.randrange(256)))
        elif op == 2:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            del data[pos:pos + rng.randint(1, 16)]
        elif op == 4:
            del data[rng.randrange(max(1, len(data))):]
        else:
            data[pos:pos] = data[rng.randrange(max(1, len(data))):][:rng.randint(1, 32)]
    return bytes(data)


def fuzz_packet(rng: random.Random) -> bytes:
    """One hostile datagram (or TCP message)."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 600))
    if kind == 1:
        packet = well_formed(rng)
        return packet[:rng.randrange(len(packet))]  # truncated
    if kind == 2:
        return malformed_opt(rng)
    if kind == 3:
        return lying_counts(rng)
    if kind == 4:
        return mutate(rng, malformed_opt(rng))
    if kind == 5:  # a name with a compression pointer, or a label over 63
        head = raw_header(rng.randrange(65536))
        return head + rng.choice((b"\xc0\x0c", b"\x40" + b"a" * 64 + b"\x00",
                                  b"\x3f" * 70)) + b"\x00\x01\x00\x01"
    return mutate(rng, well_formed(rng))


def tcp_stream(rng: random.Random) -> bytes:
    """Frames for one TCP connection: honest ones, and length prefixes that lie."""
    out = bytearray()
    for _ in range(rng.randint(1, 8)):
        msg = fuzz_packet(rng) if rng.random() < 0.8 else well_formed(rng)
        lie = rng.randrange(6)
        if lie == 0:  # claims more than follows (the next frame's bytes are eaten)
            out += struct.pack("!H", min(0xFFFF, len(msg) + rng.randint(1, 300))) + msg
        elif lie == 1:  # claims less
            out += struct.pack("!H", rng.randrange(max(1, len(msg)))) + msg
        elif lie == 2:
            out += rng.choice((b"\x00\x00", b"\xff\xff", b"\x00"))
        else:
            out += struct.pack("!H", len(msg)) + msg
    return bytes(out)
