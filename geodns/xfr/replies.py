"""Small replies shared by the transfer, NOTIFY and other-opcode paths."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode

from geodns.wire import decode as wd
from geodns.wire.encode import error_response

PAYLOAD = 1232  # the EDNS payload size we advertise on these paths


def reply(msg: dns.message.Message, rcode: int, aa: bool = False) -> bytes:
    """A response to ``msg`` with ``rcode``: question copied, OPT echoed when the query
    had one, signed when the query's TSIG verified."""
    r = dns.message.make_response(msg, our_payload=PAYLOAD)
    r.set_rcode(dns.rcode.Rcode(rcode))
    if aa:
        r.flags |= dns.flags.AA
    return r.to_wire(max_size=65535)


def rcode_only(wire: bytes, rcode: int) -> bytes:
    """Header (+ question) with ``rcode``, for a message dnspython cannot parse."""
    q = wd.decode(wire)
    if q is None:  # callers only pass queries the decoder accepted
        raise ValueError("not a query")
    return error_response(q, rcode, PAYLOAD)
