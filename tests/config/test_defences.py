"""[rrl] and [cookies]: defaults, what a present section means, and located problems."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from geodns.config import Config, ConfigError, parse_config


def _ok(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.toml")


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "t.toml")
    return info.value.problems


def test_defaults_rrl_off_cookies_on() -> None:
    for cfg in (_ok(""), Config.default()):
        assert not cfg.rrl.enabled
        assert cfg.cookies.enabled and cfg.cookies.secret is None


def test_present_rrl_section_turns_it_on_with_bind_like_defaults() -> None:
    rrl = _ok("[rrl]\n").rrl
    assert rrl.enabled
    assert (rrl.responses_per_second, rrl.errors_per_second, rrl.nxdomains_per_second) \
        == (20, None, None)
    assert (rrl.window, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix) == (15, 2, 24, 56)
    assert rrl.exempt == () and not rrl.log_only
    assert not _ok("[rrl]\nenabled = false\n").rrl.enabled


def test_every_rrl_key() -> None:
    rrl = _ok("""
        [rrl]
        responses_per_second = 10
        errors_per_second = 0
        nxdomains_per_second = 3
        window = 5
        slip = 0
        ipv4_prefix = 32
        ipv6_prefix = 64
        exempt = ["192.0.2.0/24", "2001:db8::/32"]
        log_only = true
        table_size = 4096
    """).rrl
    assert (rrl.responses_per_second, rrl.errors_per_second, rrl.nxdomains_per_second,
            rrl.window, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix, rrl.log_only,
            rrl.table_size) == (10, 0, 3, 5, 0, 32, 64, True, 4096)
    assert rrl.exempt == (ipaddress.ip_network("192.0.2.0/24"),
                          ipaddress.ip_network("2001:db8::/32"))


def test_rrl_problems_are_located() -> None:
    problems = _problems("""
        [rrl]
        responses_per_second = -1
        window = 0
        slip = 11
        ipv4_prefix = 33
        exempt = ["192.0.2.1/24", "nonsense"]
        log_only = "yes"
        respones_per_second = 5
    """)
    assert problems == [
        "t.toml:3: rrl.responses_per_second: must be at least 0",
        "t.toml:4: rrl.window: must be at least 1",
        "t.toml:5: rrl.slip: must be at most 10",
        "t.toml:6: rrl.ipv4_prefix: must be at most 32",
        "t.toml:7: rrl.exempt[0]: '192.0.2.1/24' has host bits set (did you mean "
        "'192.0.2.0/24'?)",
        "t.toml:7: rrl.exempt[1]: invalid CIDR 'nonsense'",
        "t.toml:8: rrl.log_only: expected a boolean, got string",
        "t.toml:9: rrl.respones_per_second: unknown key; did you mean "
        "'responses_per_second'?",
    ]


def test_cookie_secrets() -> None:
    c = _ok("""
        [cookies]
        secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
        previous_secret = "dd3bdf9344b678b185a6f5cb60fca715"
    """).cookies
    assert c.secret == bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
    assert c.previous_secret == bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715")
    assert _ok("[cookies]\nrotation = 7200\n").cookies.rotation == 7200
    assert not _ok("[cookies]\nenabled = false\n").cookies.enabled


def test_cookie_problems_are_located() -> None:
    assert _problems("""
        [cookies]
        secret = "e5e973"
        rotation = 60
    """) == [
        "t.toml:3: cookies.secret: expected 32 hexadecimal digits (a 128-bit SipHash key), "
        "got 6 characters",
        "t.toml:4: cookies.rotation: must be at least 3600",
        "t.toml:4: cookies.rotation: applies to the generated secret only; a configured "
        "`secret` is rolled by hand (new `secret`, old one as `previous_secret`)",
    ]
    assert _problems('[cookies]\nprevious_secret = "zz3bdf9344b678b185a6f5cb60fca715"\n') == [
        "t.toml:2: cookies.previous_secret: expected 32 hexadecimal digits (a 128-bit "
        "SipHash key), got 32 characters",
        "t.toml:2: cookies.previous_secret: needs `secret` (the one cookies are made with)",
    ]
