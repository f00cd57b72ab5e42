"""Response rate limiting: accounting per (client block, answer class), slip, window,
exemptions, log_only, and a table whose memory does not grow with the sources."""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys

import pytest

from geodns.config.model import RRLConfig
from geodns.rrl import DROP, ERROR_TOKEN, NXDOMAIN, OK, POSITIVE, SLIP, RateLimiter, Token
from geodns.zones.store import build_store
from tests.helpers.packets import encode_name

ZONE = """\
$ORIGIN rrl.test.
$TTL 300
@       IN SOA ns1 hostmaster 1 7200 3600 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.1
www     IN A   192.0.2.10
*.wild  IN A   192.0.2.20
sub     IN NS  ns.elsewhere.example.
"""
STORE = build_store({"rrl.test.zone": ZONE})
A, AAAA = 1, 28


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock | None = None, **kw: object) -> RateLimiter:
    cfg = dataclasses.replace(RRLConfig(enabled=True, responses_per_second=5, slip=0,
                                        window=3, table_size=4096), **kw)
    return RateLimiter(cfg, clock or Clock())


def token(r: RateLimiter, name: str, qtype: int = A, rcode: int = 0,
          pool: str | None = None) -> Token:
    return r.token(STORE, encode_name(name).lower(), qtype, rcode, pool)


def verdicts(r: RateLimiter, client: str, tok: Token, n: int) -> list[int]:
    return [r.check(client, tok) for _ in range(n)]


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize(("name", "qtype", "rcode", "pool", "same_as"), [
    # (what is asked, what it shares an account with)
    ("WWW.rrl.test.", A, 0, None, ("www.rrl.test.", A, 0, None)),  # case does not matter
    ("a.wild.rrl.test.", A, 0, None, ("b.wild.rrl.test.", A, 0, None)),  # wildcard: zone
    ("x.sub.rrl.test.", A, 0, None, ("y.sub.rrl.test.", AAAA, 0, None)),  # below a cut: zone
    ("nx1.rrl.test.", A, 3, None, ("nx2.rrl.test.", AAAA, 3, None)),  # NXDOMAIN: zone
    ("www.rrl.test.", A, 0, "www", ("api.rrl.test.", AAAA, 0, "www")),  # steered: pool
    ("foo.example.", A, 5, None, ("bar.test.", MX := 15, 2, None)),  # errors: client only
])
def test_accounts_shared(name: str, qtype: int, rcode: int, pool: str | None,
                         same_as: tuple[str, int, int, str | None]) -> None:
    r = limiter()
    assert token(r, name, qtype, rcode, pool) == token(r, *same_as)


@pytest.mark.parametrize(("one", "other"), [
    (("www.rrl.test.", A, 0, None), ("www.rrl.test.", AAAA, 0, None)),  # per type
    (("www.rrl.test.", A, 0, None), ("ns1.rrl.test.", A, 0, None)),  # per name
    (("www.rrl.test.", A, 0, "www"), ("www.rrl.test.", A, 0, "api")),  # per pool
    (("nx.rrl.test.", A, 3, None), ("a.wild.rrl.test.", A, 0, None)),  # per class
    (("nx.rrl.test.", A, 3, None), ("foo.example.", A, 5, None)),
])
def test_accounts_apart(one: tuple[str, int, int, str | None],
                        other: tuple[str, int, int, str | None]) -> None:
    r = limiter()
    assert token(r, *one) != token(r, *other)


def test_classes() -> None:
    r = limiter()
    assert token(r, "www.rrl.test.")[0] == POSITIVE
    assert token(r, "nope.rrl.test.", rcode=3)[0] == NXDOMAIN
    assert token(r, "nope.example.", rcode=5) == ERROR_TOKEN


def test_random_names_cannot_dodge_the_limit() -> None:
    r = limiter()
    got = [r.check("198.51.100.7", token(r, f"r{i}.rrl.test.", rcode=3)) for i in range(8)]
    assert got == [OK] * 5 + [DROP] * 3
    got = [r.check("198.51.100.7", token(r, f"r{i}.wild.rrl.test.")) for i in range(8)]
    assert got == [OK] * 5 + [DROP] * 3


# ------------------------------------------------------------------ rates and window


def test_limit_per_second_then_refill() -> None:
    clock = Clock()
    r = limiter(clock)
    tok = token(r, "www.rrl.test.")
    assert verdicts(r, "198.51.100.7", tok, 7) == [OK] * 5 + [DROP] * 2
    clock.now += 1  # one second of credit pays the two over and three more
    assert verdicts(r, "198.51.100.7", tok, 4) == [OK] * 3 + [DROP]


def test_credit_is_capped_at_one_second() -> None:
    clock = Clock()
    r = limiter(clock)
    tok = token(r, "www.rrl.test.")
    r.check("198.51.100.7", tok)
    clock.now += 100  # idle for long: still only `rate` in a burst
    assert verdicts(r, "198.51.100.7", tok, 6) == [OK] * 5 + [DROP]


def test_window_is_how_long_a_flood_is_remembered() -> None:
    clock = Clock()
    r = limiter(clock, window=3)
    tok = token(r, "www.rrl.test.")
    verdicts(r, "198.51.100.7", tok, 1000)  # debt floored at window * rate = 15
    clock.now += 3  # paid back 15: at zero, the next response is still over
    assert r.check("198.51.100.7", tok) == DROP
    clock.now += 1
    assert r.check("198.51.100.7", tok) == OK


def test_class_rates() -> None:
    r = limiter(responses_per_second=5, nxdomains_per_second=2, errors_per_second=0)
    nx = token(r, "nope.rrl.test.", rcode=3)
    assert verdicts(r, "198.51.100.7", nx, 3) == [OK, OK, DROP]
    assert verdicts(r, "198.51.100.7", ERROR_TOKEN, 50) == [OK] * 50  # 0: unlimited
    assert verdicts(r, "198.51.100.7", token(r, "www.rrl.test."), 6) == [OK] * 5 + [DROP]


def test_errors_default_to_the_responses_rate() -> None:
    r = limiter(responses_per_second=3)
    assert verdicts(r, "198.51.100.7", ERROR_TOKEN, 4) == [OK] * 3 + [DROP]


# ------------------------------------------------------------------ slip


@pytest.mark.parametrize(("slip", "expected"), [
    (0, [DROP] * 6),
    (1, [SLIP] * 6),
    (2, [DROP, SLIP] * 3),
    (3, [DROP, DROP, SLIP] * 2),
])
def test_slip(slip: int, expected: list[int]) -> None:
    r = limiter(slip=slip)
    tok = token(r, "www.rrl.test.")
    assert verdicts(r, "198.51.100.7", tok, 11) == [OK] * 5 + expected


# ------------------------------------------------------------------ who is a client


@pytest.mark.parametrize(("a", "b", "shared", "kw"), [
    ("192.0.2.1", "192.0.2.200", True, {}),  # same /24
    ("192.0.2.1", "192.0.3.1", False, {}),
    ("192.0.2.1", "192.0.3.1", True, {"ipv4_prefix": 16}),
    ("192.0.2.1", "192.0.2.129", False, {"ipv4_prefix": 25}),
    ("2001:db8:0:ff::1", "2001:db8:0:1::2", True, {}),  # same /56
    ("2001:db8:0:100::1", "2001:db8:0:1::2", False, {}),
    ("2001:db8:0:100::1", "2001:db8:0:1::2", True, {"ipv6_prefix": 48}),
    ("fe80::1%eth0", "fe80::2", True, {}),  # scope id ignored
    ("0.0.0.1", "::1", False, {"ipv4_prefix": 0, "ipv6_prefix": 0}),  # families apart
])
def test_prefix_grouping(a: str, b: str, shared: bool, kw: dict[str, int]) -> None:
    r = limiter(**kw)
    tok = token(r, "www.rrl.test.")
    verdicts(r, a, tok, 5)  # a spends the block's budget
    assert r.check(b, tok) == (DROP if shared else OK)


def test_exempt_clients_are_never_limited() -> None:
    import ipaddress
    r = limiter(exempt=(ipaddress.ip_network("192.0.2.0/25"),
                        ipaddress.ip_network("2001:db8::/32")))
    tok = token(r, "www.rrl.test.")
    assert verdicts(r, "192.0.2.1", tok, 50) == [OK] * 50
    assert verdicts(r, "2001:db8::53", tok, 50) == [OK] * 50
    assert verdicts(r, "192.0.2.200", tok, 6) == [OK] * 5 + [DROP]  # the other half


# ------------------------------------------------------------------ log_only, metrics


def test_log_only_answers_logs_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, int]] = []
    clock = Clock()
    r = limiter(clock, log_only=True, slip=2)
    r.on_limit = lambda action, cls: seen.append((action, cls))
    tok = token(r, "www.rrl.test.")
    with caplog.at_level(logging.WARNING, logger="geodns.rrl"):
        assert verdicts(r, "198.51.100.7", tok, 100) == [OK] * 100
        clock.now += 5
        verdicts(r, "198.51.100.7", tok, 100)
    assert seen == [("logged", POSITIVE)] * (95 + 95)  # 5 s pay the debt, a second's worth
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 1, lines  # logging is rate-limited (one line per 10 s)
    assert "would limit positive answers for www.rrl.test./A to 198.51.100.0/24" in lines[0]


def test_limiting_is_logged_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    r = limiter(clock, slip=2)
    tok = token(r, "nope.rrl.test.", rcode=3)
    with caplog.at_level(logging.WARNING, logger="geodns.rrl"):
        verdicts(r, "2001:db8::1", tok, 25)
        clock.now += 11
        verdicts(r, "2001:db8::1", tok, 25)
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 2, lines
    assert "limiting nxdomain answers in zone rrl.test. to 2001:db8::/56" in lines[0]
    # the second line counts what was limited since the first: the 19 after it in the
    # first burst and the first of the 20 in the second (11 s later: 5 answered)
    assert "10 dropped and 10 slipped" in lines[1], lines[1]


# ------------------------------------------------------------------ memory


def test_memory_is_fixed_whatever_the_number_of_sources() -> None:
    r = limiter(table_size=65536)
    size = r.table_bytes()
    tok = token(r, "www.rrl.test.")

    def flood(first: int, count: int) -> None:
        for i in range(first, first + count):  # one new /24 per response
            r.check(f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.1", tok)

    flood(0, 200_000)  # every bucket is in use now
    gc.collect()
    before = sys.getallocatedblocks()
    flood(200_000, 1_000_000)  # a million more distinct sources
    gc.collect()
    grown = sys.getallocatedblocks() - before
    assert r.table_bytes() == size
    # numbers in the table are replaced in place (sizes vary a little); one object kept
    # per source would be a million blocks
    assert grown < 20_000, f"{grown} more memory blocks after 1M more sources"


def test_memo_of_account_keys_is_bounded() -> None:
    from geodns.rrl import MEMO_LIMIT
    r = limiter()
    for i in range(MEMO_LIMIT * 2 + 5):
        token(r, f"h{i}.wild.rrl.test.")
    assert len(r.classifier.memo) <= MEMO_LIMIT


def test_reconfigured_keeps_accounts_only_when_nothing_changed() -> None:
    r = limiter()
    tok = token(r, "www.rrl.test.")
    verdicts(r, "198.51.100.7", tok, 5)
    assert r.reconfigured(r.config) is r
    assert r.reconfigured(r.config).check("198.51.100.7", tok) == DROP
    changed = r.reconfigured(dataclasses.replace(r.config, responses_per_second=6))
    assert changed is not r and changed.check("198.51.100.7", tok) == OK
