"""Queries whose opcode is not QUERY (RFC 8906: answer every well-formed message).

NOTIFY goes to the secondary manager (accepted from a zone's primaries only);
UPDATE (we take no dynamic updates) and every other opcode get NOTIMP.  Unlike the
hot path's error replies these keep the OPT record when the query had one (RFC 6891
7), which is why they are built with dnspython, off the per-query path.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.message
import dns.opcode
import dns.rcode

from geodns.xfr.replies import rcode_only, reply

NotifyFn = Callable[[bytes, str], bytes]


def answer_opcode(wire: bytes, peer: str, notify: NotifyFn | None) -> bytes:
    """The reply to a non-QUERY message from ``peer`` (``wire`` passed the decoder)."""
    opcode = (wire[2] >> 3) & 0x0F
    if opcode == dns.opcode.NOTIFY and notify is not None:
        return notify(wire, peer)
    try:
        msg = dns.message.from_wire(wire, keyring=False)
    except dns.exception.DNSException:
        return rcode_only(wire, dns.rcode.NOTIMP if opcode != dns.opcode.NOTIFY
                          else dns.rcode.FORMERR)
    if opcode == dns.opcode.NOTIFY:  # no secondary zones at all
        return reply(msg, dns.rcode.REFUSED)
    return reply(msg, dns.rcode.NOTIMP)
