"""DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A server cookie proves that the client saw one of our answers at its address: a
spoofed source cannot have it.  It is ``version 1 | reserved 0 | timestamp | hash``
where the hash is SipHash-2-4, keyed with the server secret, over
``client cookie | version | reserved | timestamp | client IP``.  Every server of an
anycast fleet that shares the secret accepts every other's cookies.

Secrets: a configured one (shared by the fleet, rolled by hand with ``previous_secret``)
or one generated at start and replaced every ``rotation`` seconds; the one before is
still accepted, so a cookie stays valid across one rotation.  Cost: only for queries
that carry a COOKIE option, one SipHash to check and at most one to make.
"""

from __future__ import annotations

import hmac
import os
import socket
import time
from collections.abc import Callable
from typing import Final

from siphashc import siphash

from geodns.config.model import CookiesConfig

VERSION: Final = 1
VALID_PAST: Final = 3600  # a cookie older than an hour is invalid (RFC 9018 4.3)
VALID_FUTURE: Final = 300  # ... and one more than 5 minutes ahead
RENEW_AFTER: Final = 1800  # older than half an hour: hand out a fresh one
BADCOOKIE: Final = 23
_HEAD: Final = b"\x01\x00\x00\x00"  # version 1, reserved 0


def packed_ip(client: str) -> bytes:
    """The client address as the hash input wants it: 4 or 16 bytes."""
    if ":" in client:
        return socket.inet_pton(socket.AF_INET6, client.partition("%")[0])
    return socket.inet_aton(client)


def server_cookie(secret: bytes, client_cookie: bytes, ip: bytes, timestamp: int) -> bytes:
    """An RFC 9018 version 1 server cookie (16 bytes)."""
    head = _HEAD + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
    return head + siphash(secret, client_cookie + head + ip).to_bytes(8, "little")


def _hash_ok(secret: bytes, cookie: bytes, ip: bytes) -> bool:
    mac = siphash(secret, cookie[:16] + ip).to_bytes(8, "little")
    return hmac.compare_digest(mac, cookie[16:])


class Cookies:
    """Checks the cookies clients send and makes the ones we send back."""

    def __init__(self, config: CookiesConfig, clock: Callable[[], float] = time.time,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.clock = clock
        self.random = random
        if config.secret is not None:
            self.secrets: tuple[bytes, ...] = tuple(
                s for s in (config.secret, config.previous_secret) if s is not None)
            self.next_rotation = float("inf")
        else:
            self.secrets = (random(16),)
            self.next_rotation = clock() + config.rotation

    def reconfigured(self, config: CookiesConfig) -> Cookies:
        """Keep this object (and its generated secrets) when nothing changed."""
        return self if config == self.config else Cookies(config, self.clock, self.random)

    def _rotate(self, now: float) -> None:
        self.secrets = (self.random(16), self.secrets[0])
        self.next_rotation = now + self.config.rotation

    def answer(self, cookie: bytes, client: str) -> tuple[bool, bytes]:
        """(the client's server cookie is valid, COOKIE option data for the reply).

        ``cookie`` is the option as received: a client cookie (8 bytes), or client +
        server cookie (16..40 bytes; the decoder has checked the lengths).
        """
        now_f = self.clock()
        if now_f >= self.next_rotation:
            self._rotate(now_f)
        now = int(now_f)
        ip = packed_ip(client)
        secrets = self.secrets
        if len(cookie) == 24 and cookie[8] == VERSION:
            age = (now - int.from_bytes(cookie[12:16], "big")) & 0xFFFFFFFF  # serial arithmetic
            if age <= VALID_PAST or 0x100000000 - age <= VALID_FUTURE:
                if _hash_ok(secrets[0], cookie, ip):
                    if age < RENEW_AFTER and cookie[9:12] == b"\x00\x00\x00":
                        return True, cookie  # fresh and ours: echo it
                    return True, cookie[:8] + server_cookie(secrets[0], cookie[:8], ip, now)
                for old in secrets[1:]:
                    if _hash_ok(old, cookie, ip):
                        return True, cookie[:8] + server_cookie(secrets[0], cookie[:8], ip,
                                                                now)
        return False, cookie[:8] + server_cookie(secrets[0], cookie[:8], ip, now)
