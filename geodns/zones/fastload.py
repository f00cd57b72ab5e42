"""A fast reader for the plain shapes that make up large zone files.

dnspython's zone reader costs about 60 us a record: 60 s for a zone of a million
records.  Generated zones are almost entirely lines like ``name [ttl] [IN] TYPE data``
with A, AAAA, CNAME, NS, MX, PTR, TXT and DYNA data; this module reads those at a few
microseconds a line, straight into wire form, and hands every other record type's data
to dnspython's rdata parser.  Anything it does not understand exactly as dnspython
would (``$INCLUDE``, ``$GENERATE``, escapes in names, other classes, any error) raises
:class:`NotSimple`, and the caller reads the whole file with the full reader instead,
which also reports every problem with its line.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl

from geodns.zones.dyna import DYNA_TYPE
from geodns.zones.names import from_text, lines

__all__ = ["NotSimple", "WireRecord", "read_wire_records"]


class NotSimple(Exception):
    """The file needs the full reader."""


class WireRecord(NamedTuple):
    """One record in wire form, with the line it starts on."""

    owner: bytes  # uncompressed wire name, as written (case kept)
    rtype: int
    ttl: int
    rdata: bytes  # uncompressed wire rdata
    line: int
    file: str


_A, _NS, _CNAME, _SOA, _PTR, _MX, _TXT, _AAAA = 1, 2, 5, 6, 12, 15, 16, 28
_NAME_TYPES: Final = {"NS": _NS, "CNAME": _CNAME, "PTR": _PTR}
_FAST: Final = {"A": _A, "AAAA": _AAAA, "MX": _MX, "TXT": _TXT, "DYNA": DYNA_TYPE,
                **_NAME_TYPES}
_IPV4: Final = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                          r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\Z")
_PLAIN_TXT: Final = re.compile(r'(?:"[^"\\]*"\s*)+\Z')
_POOL: Final = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")
_AAAA_CHARS: Final = frozenset("0123456789abcdefABCDEF:")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text without comments, parentheses joined) for every line
    that holds something."""
    pending: list[str] = []
    start = 0
    depth = 0
    for no, raw in enumerate(lines(text), 1):
        if '"' in raw or ";" in raw or "(" in raw or ")" in raw:
            kept: list[str] = []
            quoted = False
            for ch in raw:
                if quoted:
                    if ch == "\\":
                        raise NotSimple  # escapes: the full reader knows them
                    if ch == '"':
                        quoted = False
                    kept.append(ch)
                elif ch == '"':
                    quoted = True
                    kept.append(ch)
                elif ch == ";":
                    break
                elif ch == "(":
                    depth += 1
                    kept.append(" ")
                elif ch == ")":
                    depth -= 1
                    if depth < 0:
                        raise NotSimple
                    kept.append(" ")
                else:
                    kept.append(ch)
            if quoted:
                raise NotSimple  # a string spanning lines
            line = "".join(kept)
        else:
            line = raw
        if pending:
            pending.append(line)
            if depth == 0:
                yield start, " ".join(pending)
                pending = []
            continue
        if depth > 0:
            start = no
            pending = [line]
            continue
        if line.strip():
            yield no, line.rstrip("\r")
    if depth:
        raise NotSimple


def _ttl_value(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    if token[0].isdigit():
        try:
            return dns.ttl.from_text(token)
        except dns.ttl.BadTTL:
            return None
    return None


def read_wire_records(path: str, text: str, origin: dns.name.Name) -> Iterator[WireRecord]:
    """Every record of a plain zone file in wire form, as it is read; NotSimple (raised
    while iterating) when the file needs the full reader, for every kind of error too."""
    origin_name = origin
    origin_wire: bytes = origin.to_wire()  # type: ignore[assignment]
    last_owner = origin_wire
    default_ttl = 0
    default_known = False
    default_from_soa = False
    last_ttl = 0
    last_known = False
    pack_h = struct.Struct("!H").pack
    try:
        for no, line in _logical_lines(text):
            blank = line[0] in " \t"
            parts = line.split()
            if not parts:
                continue
            head = parts[0]
            if head[0] == "$":
                word = head.upper()
                if word == "$TTL" and len(parts) == 2:
                    value = dns.ttl.from_text(parts[1])
                    default_ttl, default_known, default_from_soa = value, True, False
                    continue
                if word == "$ORIGIN" and len(parts) == 2:
                    origin_name = dns.name.from_text(parts[1], origin_name)
                    origin_wire = origin_name.to_wire()  # type: ignore[assignment]
                    continue
                raise NotSimple  # $INCLUDE, $GENERATE, anything else
            i = 0
            if not blank:
                last_owner = from_text(head, origin_wire, origin_name)
                i = 1
            owner = last_owner
            ttl: int | None = None
            if i < len(parts):
                ttl = _ttl_value(parts[i])
                if ttl is not None:
                    i += 1
            if i < len(parts) and parts[i].upper() == "IN":
                i += 1
                if ttl is None and i < len(parts):
                    ttl = _ttl_value(parts[i])
                    if ttl is not None:
                        i += 1
            elif i < len(parts) and parts[i].upper() in ("CH", "HS", "ANY", "NONE"):
                raise NotSimple  # another class: the full reader says why it is wrong
            if ttl is not None:
                last_ttl, last_known = ttl, True
            if i >= len(parts):
                raise NotSimple
            word = parts[i].upper()
            args = parts[i + 1:]
            rtype = _FAST.get(word)
            if rtype == _A and len(args) == 1 and _IPV4.match(args[0]):
                rdata = socket.inet_aton(args[0])
            elif rtype == _AAAA and len(args) == 1 and _AAAA_CHARS.issuperset(args[0]):
                rdata = socket.inet_pton(socket.AF_INET6, args[0])
            elif rtype in (_NS, _CNAME, _PTR) and len(args) == 1:
                rdata = from_text(args[0], origin_wire, origin_name)
            elif rtype == _MX and len(args) == 2 and args[0].isdigit() \
                    and int(args[0]) < 65536:
                rdata = pack_h(int(args[0])) + from_text(args[1], origin_wire, origin_name)
            elif rtype == DYNA_TYPE and len(args) == 1 and _POOL.match(args[0]):
                raw = args[0].encode()
                rdata = bytes((len(raw),)) + raw
            elif rtype == _TXT and args and _PLAIN_TXT.match(" ".join(args)):
                chunks = re.findall(r'"([^"]*)"', line.split(None, len(parts) - len(args))[-1])
                encoded = [c.encode() for c in chunks]
                if any(len(c) > 255 for c in encoded):
                    raise NotSimple
                rdata = b"".join(bytes((len(c),)) + c for c in encoded)
            else:
                if rtype is None:
                    rtype = int(dns.rdatatype.from_text(word))
                if rtype in (dns.rdatatype.OPT, dns.rdatatype.ANY) or rtype == 0:
                    raise NotSimple
                rest = line.split(None, len(parts) - len(args))[-1] if args else ""
                rd = dns.rdata.from_text(dns.rdataclass.IN,
                                         dns.rdatatype.RdataType.make(rtype), rest,
                                         origin_name, relativize=False)
                rdata = rd.to_wire() or b""
                if rtype == _SOA and not default_known:
                    # pre-RFC 2308: without $TTL the SOA minimum is the default TTL
                    default_ttl = rd.minimum  # type: ignore[attr-defined]
                    default_known = default_from_soa = True
            if ttl is None:
                if last_known and (not default_known or default_from_soa):
                    ttl = last_ttl
                elif default_known:
                    ttl = default_ttl
                else:
                    raise NotSimple  # "missing default TTL": the full reader says so
            yield WireRecord(owner, rtype, ttl, rdata, no, path)
    except NotSimple:
        raise
    except (dns.exception.DNSException, ValueError, OSError, UnicodeError, IndexError):
        raise NotSimple from None
