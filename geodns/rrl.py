"""Response rate limiting (RRL) with the semantics of BIND, Knot and NSD.

A spoofed query makes us send an answer to the victim; RRL caps how many identical
answers one client block (a /24 or /56 by default) gets per second, so we stop being
an amplifier while real clients, who ask for different things or retry over TCP, are
served.  Accounts are kept per (client block, answer class, what the answer is about):

- positive answers (and NODATA) per (query name, type);
- NXDOMAIN per zone, and answers for names that do not exist in the zone (wildcard
  synthesis, names below a delegation) per zone, so random names cannot dodge the limit;
- steered (DYNA) answers per pool;
- errors (REFUSED, FORMERR, SERVFAIL, ...) per client block alone.

Each account is a balance credited ``rate`` per second (capped at ``rate``) and debited
one per response; below zero the response is dropped, except every ``slip``-th one,
which is sent truncated (TC=1, no records) so a real client behind a spoofed block
retries over TCP.  The debt is floored at ``window`` seconds of rate, so a flood is
forgotten ``window`` seconds after it stops.  TCP is never limited (the caller does not
ask).  Accounts live in a fixed-size table indexed by a keyed hash: memory does not
grow with the number of sources; a collision only resets one account.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Final

import dns.name
import dns.rdatatype

from geodns.config.model import RRLConfig
from geodns.wire.decode import wire_name
from geodns.wire.patch import question_end, truncated
from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.rrl")

# Verdicts
OK: Final = 0
DROP: Final = 1
SLIP: Final = 2

# Answer classes
POSITIVE: Final = 0
NXDOMAIN: Final = 1
ERROR: Final = 2
CLASS_NAMES: Final = ("positive", "nxdomain", "error")

Token = tuple[int, bytes]  # (answer class, what the answer is about)
ERROR_TOKEN: Final[Token] = (ERROR, b"")
LOG_EVERY: Final = 10.0  # seconds between "limiting" log lines
MEMO_LIMIT: Final = 10_000  # tokens remembered per (name, type): at most ~3 MB
_V6: Final = 1 << 128  # marks IPv6 blocks apart from IPv4 ones
_PROBE: Final = b"\x00\x00\x80\x00" + bytes(8)  # a reply without question: check()'s probe


class Classifier:
    """Decides an answer's account key; remembers it per (name, type) for the zones served.

    Works on the lowercased wire name the decoder gives, so it costs a dict lookup or two
    for the common case and a zone membership test once per new name.
    """

    def __init__(self) -> None:
        self.store: ZoneStore | None = None
        self.origins: dict[bytes, Zone] = {}
        self.memo: dict[bytes, Token] = {}

    def _use(self, store: ZoneStore) -> None:
        self.store = store
        self.origins = {z.key: z for z in store.zones.values()}
        self.memo = {}

    def zone(self, qname: bytes) -> tuple[bytes, Zone] | None:
        """The served zone that holds ``qname`` (longest suffix), with its wire origin."""
        origins = self.origins
        i = 0
        while True:
            suffix = qname[i:] if i else qname
            z = origins.get(suffix)
            if z is not None:
                return suffix, z
            n = qname[i]
            if n == 0:
                return None
            i += n + 1

    def token(self, store: ZoneStore, qname: bytes, qtype: int, rcode: int,
              pool: str | None) -> Token:
        if store is not self.store:
            self._use(store)
        if rcode == 0:
            if pool is not None:
                return (POSITIVE, b"p" + pool.encode())
            key = qname + qtype.to_bytes(2, "big")
            t = self.memo.get(key)
            if t is None:
                t = self._positive(qname, key)
                if len(self.memo) >= MEMO_LIMIT:
                    self.memo.clear()
                self.memo[key] = t
            return t
        if rcode == 3:
            found = self.zone(qname)
            return (NXDOMAIN, b"z" + found[0]) if found else (NXDOMAIN, b"")
        return ERROR_TOKEN

    def _positive(self, qname: bytes, key: bytes) -> Token:
        found = self.zone(qname)
        if found is not None and qname not in found[1].nodes and qname not in found[1].ents:
            return (POSITIVE, b"z" + found[0])  # wildcard or below a cut: the zone's account
        return (POSITIVE, b"n" + key)


def _wire(name: dns.name.Name) -> bytes:
    """Lowercased uncompressed wire form (length bytes are never letters)."""
    return b"".join(bytes((len(label),)) + label.lower() for label in name.labels)


def describe(token: Token) -> str:
    """Human text of an account key, for logs only."""
    cls, key = token
    what = CLASS_NAMES[cls]
    if not key:
        return what
    kind, rest = key[:1], key[1:]
    if kind == b"p":
        return f"{what} answers of pool {rest.decode(errors='replace')}"
    if kind == b"z":
        return f"{what} answers in zone {wire_name(rest) if rest else '?'}"
    qtype = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(int.from_bytes(rest[-2:], "big")))
    return f"{what} answers for {wire_name(rest[:-2])}/{qtype}"


def block_text(block: int | str, v4_prefix: int, v6_prefix: int) -> str:
    if isinstance(block, str):
        return f"{block}.0/24"
    if block >= _V6:
        net = (block - _V6) << (128 - v6_prefix)
        return f"{ipaddress.IPv6Address(net)}/{v6_prefix}"
    return f"{ipaddress.IPv4Address(block << (32 - v4_prefix))}/{v4_prefix}"


class RateLimiter:
    """The accounts table and the per-response decision."""

    def __init__(self, config: RRLConfig, clock: Callable[[], float] = time.monotonic,
                 on_limit: Callable[[str, int], None] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.on_limit = on_limit  # (action "dropped"/"slipped"/"logged", class) for metrics
        rps = config.responses_per_second
        self.rates = (
            rps,
            rps if config.nxdomains_per_second is None else config.nxdomains_per_second,
            rps if config.errors_per_second is None else config.errors_per_second,
        )
        self.window = config.window
        self.slip = config.slip
        self.log_only = config.log_only
        self.shift4 = 32 - config.ipv4_prefix
        self.shift6 = 128 - config.ipv6_prefix
        self.exempt4 = [(int(n.network_address), int(n.netmask)) for n in config.exempt
                        if n.version == 4]
        self.exempt6 = [(int(n.network_address), int(n.netmask)) for n in config.exempt
                        if n.version == 6]
        # IPv4 /24 without IPv4 exemptions (the default): the block is the address text
        # up to its last dot, which is cheaper than converting it to a number.
        self.fast4 = config.ipv4_prefix == 24 and not self.exempt4
        n = self.size = config.table_size
        # Per bucket: the keyed hash of its account (0: empty), the time of its last
        # credit, its balance, and the limited responses since its last slip.  Plain
        # lists: reading and writing them costs a third of what an array's boxing does,
        # and their size is fixed here (each slot holds one number, replaced in place).
        self.tags: list[int] = [0] * n
        self.stamps: list[float] = [0.0] * n
        self.balances: list[float] = [0.0] * n
        self.slips = bytearray(n)
        self.classifier = Classifier()
        self.salt = int.from_bytes(os.urandom(8), "big")
        self.respond = self._make_respond()
        self._log_at = 0.0
        self._counts = [0, 0, 0]  # dropped, slipped, logged since the last log line

    def table_bytes(self) -> int:
        """Most memory the accounts table can take: its slots, fixed at construction,
        and the numbers they hold (a 64-bit int tag, two floats, a slip count)."""
        return self.size * ((8 + 36) + 2 * (8 + 24) + 1)

    def reconfigured(self, config: RRLConfig) -> RateLimiter:
        """Keep the accounts when only nothing changed; a new table otherwise."""
        return self if config == self.config else RateLimiter(config, self.clock,
                                                              self.on_limit)

    def block(self, client: str) -> int | str | None:
        """The client's block, or None when exempt.

        For the IPv4 /24 fast path it is the address text up to its last dot (an IPv6
        address has no dot, except an IPv4-mapped one, whose /24 that is), else the
        prefix as an int (IPv6 ones marked) mixed with a random salt: Python hashes ints
        to themselves, and the table index must not be something a spoofer can aim at
        another client's account (str hashes are keyed already).
        """
        if self.fast4:
            head = client.rpartition(".")[0]
            if head:
                return head
        if ":" in client:
            a = int.from_bytes(socket.inet_pton(socket.AF_INET6, client.partition("%")[0]),
                               "big")
            for net, mask in self.exempt6:
                if a & mask == net:
                    return None
            return ((a >> self.shift6) | _V6) ^ self.salt
        a = int.from_bytes(socket.inet_aton(client), "big")
        for net, mask in self.exempt4:
            if a & mask == net:
                return None
        return (a >> self.shift4) ^ self.salt

    def check(self, client: str, token: Token) -> int:
        """Account one UDP response to ``client``: OK, DROP or SLIP (for tests and logs;
        the answer path calls :attr:`respond`)."""
        out = self.respond(_PROBE, token, client)
        return OK if out is _PROBE else DROP if out is None else SLIP

    def _make_respond(self) -> Callable[[bytes, Token, str], bytes | None]:
        """``respond(resp, token, client)``: account one UDP response to ``client`` and
        return what to send: ``resp`` itself, None (dropped) or a truncated copy (slip).

        A closure over the table and settings, one call per response: it runs for every
        UDP answer, and cell loads are cheaper than attribute lookups.
        """
        # an unlimited class (rate 0) never goes below an infinite balance
        rates = tuple(r if r else math.inf for r in self.rates)
        size, tags, stamps, balances, slips, clock = self.size, self.tags, self.stamps, \
            self.balances, self.slips, self.clock
        fast4, window, block_of, limited = self.fast4, self.window, self.block, self._limited

        def respond(resp: bytes, token: Token, client: str) -> bytes | None:
            block: int | str = client.rpartition(".")[0] if fast4 else ""
            if not block:  # not the IPv4 /24 fast path
                found = block_of(client)
                if found is None:
                    return resp
                block = found
            rate = rates[token[0]]
            h = hash((block, token))
            i = h % size
            now = clock()
            if tags[i] != h:  # a new account (or a collision: the old one is reset)
                tags[i] = h
                stamps[i] = now
                balances[i] = rate - 1
                slips[i] = 0
                return resp
            b = balances[i]
            elapsed = now - stamps[i]
            if elapsed >= 1.0:  # `rate` more for every whole second since the last credit
                seconds = elapsed // 1.0
                stamps[i] += seconds
                b += seconds * rate
                if b > rate:
                    b = rate
            b -= 1
            if b >= 0:
                balances[i] = b
                return resp
            floor = -window * rate
            balances[i] = b if b > floor else floor
            verdict = limited(i, block, token)
            if verdict == OK:
                return resp
            return None if verdict == DROP else truncated(resp, question_end(resp))

        return respond

    def _limited(self, i: int, block: int | str, token: Token) -> int:
        if self.log_only:
            verdict, action = OK, 2
        elif self.slip and self.slips[i] + 1 >= self.slip:
            self.slips[i] = 0
            verdict, action = SLIP, 1
        else:
            if self.slip:
                self.slips[i] += 1
            verdict, action = DROP, 0
        self._counts[action] += 1
        if self.on_limit is not None:
            self.on_limit(("dropped", "slipped", "logged")[action], token[0])
        now = self.clock()
        if now >= self._log_at:
            self._log(block, token)
            self._log_at = now + LOG_EVERY
        return verdict

    def _log(self, block: int | str, token: Token) -> None:
        dropped, slipped, logged = self._counts
        self._counts = [0, 0, 0]
        if not isinstance(block, str):
            block ^= self.salt
        who = block_text(block, 32 - self.shift4, 128 - self.shift6)
        if self.log_only:
            log.warning("rrl (log only): would limit %s to %s; %d response(s) over the "
                        "limit since the last report", describe(token), who, logged)
        else:
            log.warning("rrl: limiting %s to %s; %d dropped and %d slipped (truncated) "
                        "since the last report", describe(token), who, dropped, slipped)

    def token(self, store: ZoneStore, qname: bytes, qtype: int, rcode: int,
              pool: str | None) -> Token:
        return self.classifier.token(store, qname, qtype, rcode, pool)

