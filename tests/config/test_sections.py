"""The stand-alone sections: [server], [explain], [checks.*]."""

from __future__ import annotations

from pathlib import Path

from geodns.config import (
    HostPort,
)
from tests.config.cases import config_of, problems_of


def test_server_section_and_relative_paths() -> None:
    cfg = config_of("""
        [server]
        listen = ["0.0.0.0:53", "[::]:5353", "127.0.0.1", "::1"]
        zones = "z"
        udp_size = 4096
        tcp_idle_timeout = 2.5
        tcp_max_connections = 10
        tcp_message_timeout = 1.5
        tcp_max_connections_per_client = 4
        http = "[::1]:9000"

        [admin]
        state_file = "state/overrides.json"

        [explain]
        enabled = false
        allow = ["10.0.0.0/8"]
    """)
    s = cfg.server
    assert s.listen == (HostPort("0.0.0.0", 53), HostPort("::", 5353),
                        HostPort("127.0.0.1", 53), HostPort("::1", 53))
    assert str(s.listen[1]) == "[::]:5353"
    assert s.zones == Path("/etc/geodns/z")
    assert (s.udp_size, s.tcp_idle_timeout, s.tcp_max_connections) == (4096, 2.5, 10)
    assert (s.tcp_message_timeout, s.tcp_max_connections_per_client) == (1.5, 4)
    assert s.http == HostPort("::1", 9000)
    assert cfg.admin.state_file == Path("/etc/geodns/state/overrides.json")
    assert not cfg.explain.enabled
    assert not cfg.explain.allows("10.1.1.1")  # disabled wins


def test_http_empty_string_disables_control_listener() -> None:
    assert config_of('[server]\nhttp = ""\n').server.http is None


def test_explain_allow_matches_v4_mapped() -> None:
    cfg = config_of('[explain]\nallow = ["10.0.0.0/8", "2001:db8::/32"]\n')
    assert cfg.explain.allows("10.2.3.4")
    assert cfg.explain.allows("::ffff:10.2.3.4")
    assert cfg.explain.allows("2001:db8::5")
    assert not cfg.explain.allows("127.0.0.1")
    assert not cfg.explain.allows("junk")


def test_checks_defaults_and_types() -> None:
    cfg = config_of("""
        [checks.h]
        type = "https"
        host = "www.example.com"
        expect_status = [200, 204]
        address = "127.0.0.1"

        [checks.t]
        type = "tcp"
        port = 443
        target = "address"

        [checks.d]
        type = "dns"
        qname = "example.com"
        qtype = "a"
        initial = "down"

        [checks.e]
        type = "external"
        command = "/usr/local/bin/probe --pop x"
        interval = 30
        timeout = 20
    """)
    h = cfg.checks["h"]
    assert (h.port, h.path, h.method, h.tls_verify, h.expect_status) == (
        443, "/", "GET", True, (200, 204))
    assert (h.interval, h.timeout, h.fall, h.rise, h.initial, h.target) == (
        10.0, 3.0, 3, 2, "up", "pop")
    assert h.address == "127.0.0.1"
    assert cfg.checks["t"].port == 443 and cfg.checks["t"].target == "address"
    d = cfg.checks["d"]
    assert (d.port, d.qname, d.qtype, d.expect_rcode, d.initial) == (
        53, "example.com.", "A", "NOERROR", "down")
    assert cfg.checks["e"].command == ("/usr/local/bin/probe", "--pop", "x")


def test_tcp_limits_are_checked_with_their_line() -> None:
    problems = problems_of("""\
        [server]
        tcp_message_timeout = 0
        tcp_max_connections_per_client = 0
    """, "geodns.toml")
    assert problems == [
        "geodns.toml:2: server.tcp_message_timeout: must be greater than 0",
        "geodns.toml:3: server.tcp_max_connections_per_client: must be at least 1",
    ]
