"""TSIG (RFC 8945) for transfers and NOTIFY: keyrings from the config, checking a
signed request, and the error responses the RFC asks for.

dnspython signs and verifies; this module only decides which key applies and turns
its exceptions into the TSIG error codes a peer (and an operator's log) needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from geodns.config import TsigKey
from geodns.xfr.logs import Quiet

log = logging.getLogger("geodns.xfr")
quiet = Quiet(log)  # badly signed queries can come from anyone over UDP

Keyring = dict[dns.name.Name, dns.tsig.Key]
FUDGE = 300
# TSIG error names (16 is BADSIG here; dnspython's Rcode calls it BADVERS).
TSIG_ERRORS: dict[int, str] = {dns.rcode.BADSIG: "BADSIG", dns.rcode.BADKEY: "BADKEY",
                               dns.rcode.BADTIME: "BADTIME"}


def keyring(keys: Mapping[str, TsigKey]) -> Keyring:
    """dnspython keys for every ``[tsig.NAME]`` table, by key name."""
    ring: Keyring = {}
    for key in keys.values():
        name = dns.name.from_text(key.name)
        ring[name] = dns.tsig.Key(name, key.secret, dns.name.from_text(key.algorithm))
    return ring


def key_for(keys: Keyring, name: str | None) -> dns.tsig.Key | None:
    """The dnspython key for a config key name (None for no key)."""
    return keys.get(dns.name.from_text(name)) if name is not None else None


@dataclass(slots=True)
class Checked:
    """A request and what its TSIG said: ``key`` is set only for a valid signature."""

    msg: dns.message.Message
    key: dns.tsig.Key | None = None
    error: int = 0  # 0, or dns.rcode.BADKEY / BADSIG / BADTIME
    detail: str = ""

    @property
    def signed(self) -> bool:
        return self.msg.tsig is not None

    def error_text(self) -> str:
        return TSIG_ERRORS.get(self.error, str(self.error))

    def key_text(self) -> str:
        name = self.msg.keyname
        return name.to_text(omit_final_dot=True) if name is not None else "none"


def check(wire: bytes, keys: Keyring) -> Checked:
    """Parse ``wire`` and verify its TSIG, if any, against ``keys``.

    Raises dns.exception.DNSException (the caller answers FORMERR) only when the
    message itself does not parse.
    """
    msg = dns.message.from_wire(wire, keyring=False)  # parse; verify below
    if msg.tsig is None:
        return Checked(msg)
    assert msg.keyname is not None
    key = keys.get(msg.keyname)
    if key is None:
        return Checked(msg, error=dns.rcode.BADKEY, detail="unknown key")
    if key.algorithm != msg.keyalgorithm:
        return Checked(msg, error=dns.rcode.BADKEY,
                       detail=f"algorithm {msg.keyalgorithm} does not match the key's")
    try:
        verified = dns.message.from_wire(wire, keyring={key.name: key})
    except dns.tsig.BadTime:
        return Checked(msg, key=None, error=dns.rcode.BADTIME, detail="clock skew")
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        return Checked(msg, error=dns.rcode.BADSIG, detail="bad signature")
    except dns.exception.DNSException as exc:
        return Checked(msg, error=dns.rcode.BADSIG, detail=str(exc) or type(exc).__name__)
    return Checked(verified, key=key)


def error_wire(checked: Checked, keys: Keyring, our_payload: int) -> bytes:
    """NOTAUTH with the TSIG error (RFC 8945 5.2): unsigned for BADKEY/BADSIG,
    signed for BADTIME (with our time in other data)."""
    msg = checked.msg
    response = dns.message.make_response(msg, our_payload=our_payload)
    response.set_rcode(dns.rcode.NOTAUTH)
    rdata = msg.tsig[0] if msg.tsig else None
    assert rdata is not None and msg.keyname is not None
    now = int(time.time())
    key = keys.get(msg.keyname)
    if checked.error == dns.rcode.BADTIME and key is not None:
        other = (now >> 32 & 0xFFFF).to_bytes(2, "big") + (now & 0xFFFFFFFF).to_bytes(4, "big")
        response.use_tsig(key, msg.keyname, fudge=FUDGE, tsig_error=dns.rcode.BADTIME,
                          other_data=other)
        response.request_mac = rdata.mac
        return response.to_wire()
    tsig = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, rdata.algorithm,
                                     now, FUDGE, b"", msg.id, checked.error, b"")
    response.tsig = dns.rrset.from_rdata(msg.keyname, 0, tsig)
    return response.to_wire()


AnswerFn = Callable[[bytes], bytes]


def answer_signed(wire: bytes, peer: str, tcp: bool, keys: Keyring,
                  answer: AnswerFn) -> bytes | None:
    """A query that carries a TSIG (a secondary's SOA check, usually): verify it,
    let ``answer`` answer it without the TSIG, and sign that answer (RFC 8945 5.3).
    None when the query has no TSIG after all (the caller answers it as usual)."""
    try:
        checked = check(wire, keys)
    except dns.exception.DNSException:
        return None  # the normal path answers FORMERR
    msg = checked.msg
    if msg.tsig is None:
        return None
    if checked.error:
        quiet.warning("query-tsig", "query for %s from %s: TSIG %s (%s) for key %s; "
                      "answered NOTAUTH", msg.question[0].name if msg.question else "-", peer,
                      checked.error_text(), checked.detail, checked.key_text())
        return error_wire(checked, keys, 1232)
    unsigned = dns.message.from_wire(wire, keyring=False)
    unsigned.tsig = None
    plain = answer(unsigned.to_wire())
    response = dns.message.from_wire(plain)
    assert checked.key is not None and msg.keyname is not None
    response.use_tsig(checked.key, msg.keyname, fudge=FUDGE)
    response.request_mac = msg.mac or b""
    limit = 65535 if tcp else (min(msg.payload, 1232) if msg.edns >= 0 else 512)
    return response.to_wire(max_size=limit, prefer_truncation=True)
