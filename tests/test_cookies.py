"""DNS server cookies: the RFC 9018 Appendix A vectors, validity, renewal and rotation."""

from __future__ import annotations

import itertools

import pytest

from geodns.config.model import CookiesConfig
from geodns.cookies import Cookies, packed_ip, server_cookie

SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cookies(now: float, secret: bytes | None = SECRET, previous: bytes | None = None,
            rotation: float = 86400.0) -> tuple[Cookies, Clock]:
    clock = Clock(now)
    keys = (bytes([i]) * 16 for i in itertools.count(1))
    return Cookies(CookiesConfig(secret=secret, previous_secret=previous, rotation=rotation),
                   clock, lambda n: next(keys)), clock


# RFC 9018 Appendix A: (client IP, query COOKIE, time, secret(s), reply COOKIE, valid)
VECTORS = [
    pytest.param("198.51.100.100", "2464c4abcf10c957", 1559731985, SECRET, None,
                 "2464c4abcf10c957010000005cf79f111f8130c3eee29480", False,
                 id="A.1 learning a new server cookie"),
    pytest.param("198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29480",
                 1559734385, SECRET, None,
                 "2464c4abcf10c957010000005cf7a871d4a564a1442aca77", True,
                 id="A.2 renewed after 40 minutes"),
    pytest.param("203.0.113.203", "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5",
                 1559734700, SECRET, None,
                 "fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e", False,
                 id="A.3 another client, reserved bytes set, 1h52m old: fresh cookie"),
    pytest.param("2001:db8:220:1:59de:d0f4:8769:82b8",
                 "22681ab97d52c298010000005cf7c57926556bd0934c72f8", 1559741961,
                 bytes.fromhex("445536bcd2513298075a5d379663c962"),
                 bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715"),
                 "22681ab97d52c298010000005cf7c609a6bb79d16625507a", True,
                 id="A.4 IPv6, made with the previous secret"),
]


@pytest.mark.parametrize(("ip", "query", "now", "secret", "previous", "reply", "valid"),
                         VECTORS)
def test_rfc9018_vectors(ip: str, query: str, now: int, secret: bytes,
                         previous: bytes | None, reply: str, valid: bool) -> None:
    jar, _ = cookies(now, secret, previous)
    got_valid, got = jar.answer(bytes.fromhex(query), ip)
    assert got.hex() == reply
    assert got_valid == valid


def test_construction_alone_matches_the_vector() -> None:
    cc = bytes.fromhex("2464c4abcf10c957")
    sc = server_cookie(SECRET, cc, packed_ip("198.51.100.100"), 1559731985)
    assert sc.hex() == "010000005cf79f111f8130c3eee29480"


def test_a_fresh_valid_cookie_is_echoed() -> None:
    jar, clock = cookies(1_700_000_000)
    _, first = jar.answer(bytes(8), "192.0.2.1")
    clock.now += 1799
    valid, again = jar.answer(first, "192.0.2.1")
    assert valid and again == first
    clock.now += 2  # older than half an hour: a new one, still valid
    valid, renewed = jar.answer(first, "192.0.2.1")
    assert valid and renewed != first and renewed[:8] == first[:8]


@pytest.mark.parametrize(("delta", "client", "tamper", "valid"), [
    (3600, "192.0.2.1", None, True),
    (3601, "192.0.2.1", None, False),  # older than an hour
    (-300, "192.0.2.1", None, True),  # minted by a fleet member 5 minutes ahead
    (-301, "192.0.2.1", None, False),
    (0, "192.0.2.2", None, False),  # another address: a spoofer's replay
    (0, "192.0.2.1", 23, False),  # hash bit flipped
    (0, "192.0.2.1", 0, False),  # client cookie changed
    (0, "192.0.2.1", 8, False),  # version 2 is not ours
])
def test_validity(delta: int, client: str, tamper: int | None, valid: bool) -> None:
    jar, clock = cookies(1_700_000_000)
    _, cookie = jar.answer(bytes(range(8)), "192.0.2.1")
    if tamper is not None:
        b = bytearray(cookie)
        b[tamper] ^= 1
        cookie = bytes(b)
    clock.now += delta
    assert jar.answer(cookie, client)[0] == valid


def test_server_cookie_of_other_length_is_invalid_but_answered() -> None:
    jar, _ = cookies(1_700_000_000)
    valid, reply = jar.answer(bytes(range(8)) + bytes(20), "192.0.2.1")
    assert not valid and reply[:8] == bytes(range(8)) and len(reply) == 24


def test_generated_secret_rotates_and_the_previous_is_accepted() -> None:
    t0 = 1_700_000_000
    jar, clock = cookies(t0, secret=None, rotation=3600)
    cc = bytes(range(8))
    clock.now = t0 + 3000
    _, cookie = jar.answer(cc, "2001:db8::1")
    clock.now = t0 + 3700  # rotated once: still accepted, renewed with the new secret
    valid, renewed = jar.answer(cookie, "2001:db8::1")
    assert valid and renewed != cookie
    assert jar.secrets == (bytes([2]) * 16, bytes([1]) * 16)
    clock.now = t0 + 7300  # rotated again (an hour after the last): the first is gone
    assert jar.answer(renewed, "2001:db8::1")[0]
    assert jar.secrets == (bytes([3]) * 16, bytes([2]) * 16)
    ip = packed_ip("2001:db8::1")
    by_first = cc + server_cookie(bytes([1]) * 16, cc, ip, int(clock.now))
    by_second = cc + server_cookie(bytes([2]) * 16, cc, ip, int(clock.now))
    assert not jar.answer(by_first, "2001:db8::1")[0]
    assert jar.answer(by_second, "2001:db8::1")[0]


def test_configured_secret_never_rotates() -> None:
    jar, clock = cookies(1_700_000_000)
    clock.now += 10 * 86400
    jar.answer(bytes(8), "192.0.2.1")
    assert jar.secrets == (SECRET,)


def test_reconfigured_keeps_generated_secrets_when_unchanged() -> None:
    jar, _ = cookies(1_700_000_000, secret=None)
    assert jar.reconfigured(jar.config) is jar
    other = jar.reconfigured(CookiesConfig(secret=SECRET))
    assert other is not jar and other.secrets == (SECRET,)
