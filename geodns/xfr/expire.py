"""EDNS EXPIRE (RFC 7314, option 9): how long a copy of a zone may still be served.

A primary answers with its SOA EXPIRE; a secondary with the time left before its own
copy expires, so a chain of secondaries never outlives the primary's intent.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.message

EXPIRE = dns.edns.OptionType.EXPIRE


def request_option() -> dns.edns.Option:
    """The empty option a query carries to ask for EXPIRE."""
    return dns.edns.GenericOption(EXPIRE, b"")


def option(seconds: int) -> dns.edns.Option:
    """The option a response carries: ``seconds`` left (clamped to 0..2^32-1)."""
    return dns.edns.GenericOption(EXPIRE, struct.pack("!I", max(0, min(seconds, 2**32 - 1))))


def option_bytes(seconds: int) -> bytes:
    """The option's wire form (code, length, value), for an answer path that writes
    its OPT record by hand."""
    return struct.pack("!HHI", EXPIRE, 4, max(0, min(seconds, 2**32 - 1)))


def asked(msg: dns.message.Message) -> bool:
    """Did the query carry an EXPIRE option?"""
    return any(opt.otype == EXPIRE for opt in msg.options)


def value(msg: dns.message.Message) -> int | None:
    """The EXPIRE seconds in a response, or None when absent or malformed."""
    for opt in msg.options:
        if opt.otype == EXPIRE:
            data = opt.to_wire()
            if data is not None and len(data) == 4:
                return int(struct.unpack("!I", data)[0])
    return None
