"""The config's values: defaults, host:port parsing, immutability."""

from __future__ import annotations

import pytest

from geodns.config import (
    Config,
    HostPort,
    parse_hostport,
)


def test_default_config() -> None:
    cfg = Config.default()
    assert cfg.pops == {} and cfg.pools == {} and cfg.checks == {}
    assert cfg.server.udp_size == 1232
    assert cfg.server.tcp_idle_timeout == 10
    assert cfg.server.tcp_max_connections == 1000
    assert cfg.server.tcp_message_timeout == 3.0
    assert cfg.server.tcp_max_connections_per_client == 100
    assert cfg.server.http == HostPort("127.0.0.1", 8053)
    assert cfg.explain.enabled
    assert cfg.explain.allows("127.0.0.1") and cfg.explain.allows("::1")
    assert not cfg.explain.allows("192.0.2.1")
    assert cfg.admin.state_file is None
    assert cfg.geoip.database.name == "GeoLite2-City.mmdb"
    assert cfg.geoip.database.is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4:53", HostPort("1.2.3.4", 53)),
        ("[2001:db8::1]:8053", HostPort("2001:db8::1", 8053)),
        ("2001:db8::1", HostPort("2001:db8::1", 7)),
        ("[::]", HostPort("::", 7)),
    ],
)
def test_parse_hostport(text: str, expected: HostPort) -> None:
    assert parse_hostport(text, 7) == expected


@pytest.mark.parametrize("text", ["host:53", "1.2.3.4:0", "1.2.3.4:x", "[1.2.3.4]:5", "[::1:5"])
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text, 53)


def test_config_is_frozen() -> None:
    cfg = Config.default()
    with pytest.raises(AttributeError):
        cfg.server = cfg.server  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.pools["x"] = None  # type: ignore[index]
