"""What `geodns serve` runs with: command-line flags over [server], once, and the one
rule for a control API off loopback (config validator, command line, listener)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from geodns.config import Config, ConfigError, HostPort, parse_config
from geodns.config.serve import (
    DEFAULT_LISTEN,
    FlagError,
    ServeFlags,
    apply_flags,
    control_token_problem,
    is_loopback,
)
from tests.helpers.paths import DATA_DIR
from tests.helpers.servers import geodns_cmd

FILE = """
[server]
listen = ["192.0.2.1:53", "[2001:db8::1]:53"]
zones = "/srv/zones"
udp_size = 1400
tcp_idle_timeout = 20
tcp_max_connections = 50
tcp_message_timeout = 2
tcp_max_connections_per_client = 5
http = "127.0.0.1:9053"
"""


def file_config(text: str = FILE) -> Config:
    return parse_config(text, "/etc/geodns/geodns.toml")


def test_without_flags_the_config_file_decides() -> None:
    server = apply_flags(file_config(), ServeFlags())
    assert server == file_config().server
    assert server.listen == (HostPort("192.0.2.1", 53), HostPort("2001:db8::1", 53))
    assert server.zones == Path("/srv/zones") and server.http == HostPort("127.0.0.1", 9053)


def test_without_a_config_file_listeners_are_loopback_port_5353() -> None:
    server = apply_flags(Config.default(), ServeFlags())
    assert server.listen == DEFAULT_LISTEN == (HostPort("127.0.0.1", 5353),
                                               HostPort("::1", 5353))
    assert server.zones == Path("zones")
    assert server.http == HostPort("127.0.0.1", 8053)


def test_flags_win_over_the_config_file() -> None:
    flags = ServeFlags(zones="here", listen=("127.0.0.1:0", "[::1]:5300"), udp_size=1232,
                       tcp_idle_timeout=1.5, tcp_max_connections=7, tcp_message_timeout=0.5,
                       tcp_max_per_client=2, http="[::1]:0")
    server = apply_flags(file_config(), flags)
    assert server.listen == (HostPort("127.0.0.1", 0), HostPort("::1", 5300))
    assert server.zones == Path("here")
    assert (server.udp_size, server.tcp_idle_timeout, server.tcp_max_connections,
            server.tcp_message_timeout, server.tcp_max_connections_per_client) == (
        1232, 1.5, 7, 0.5, 2)
    assert server.http == HostPort("::1", 0)
    # What the flags leave alone stays as the file says.
    partial = apply_flags(file_config(), ServeFlags(tcp_max_connections=9))
    assert partial.tcp_max_connections == 9 and partial.tcp_idle_timeout == 20
    assert partial.listen == file_config().server.listen


@pytest.mark.parametrize("off", ["off", ""])
def test_http_off_turns_the_control_listener_off(off: str) -> None:
    assert apply_flags(file_config(), ServeFlags(http=off)).http is None


@pytest.mark.parametrize(("flags", "message"), [
    (ServeFlags(listen=("127.0.0.1",)), "bad listen address '127.0.0.1': missing port"),
    (ServeFlags(listen=("300.0.0.1:53",)), "bad listen address '300.0.0.1:53'"),
    (ServeFlags(http="localhost:80"), "--http: bad listen address 'localhost:80'"),
])
def test_bad_flags_are_usage_errors(flags: ServeFlags, message: str) -> None:
    with pytest.raises(FlagError, match=message):
        apply_flags(file_config(), flags)


def test_a_control_listener_off_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="the control API on 0.0.0.0 is not loopback and has "
                       r"no token: set \[server\] http_token"):
        apply_flags(Config.default(), ServeFlags(http="0.0.0.0:8053"))
    with_token = file_config(FILE + 'http_token = "s3cret"\n')
    server = apply_flags(with_token, ServeFlags(http="0.0.0.0:0"))
    assert server.http == HostPort("0.0.0.0", 0) and server.http_token == "s3cret"


def test_the_config_validator_applies_the_same_rule() -> None:
    text = '[server]\nhttp = "0.0.0.0:8053"\n'
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "g.toml")
    assert exc.value.problems == [
        "g.toml:2: server.http: the control API on 0.0.0.0 is not loopback and has no "
        'token: set server.http_token (every request must then send it as a bearer '
        'token), listen on 127.0.0.1, or "" to turn it off']
    assert parse_config(text + 'http_token = "x"\n', "g.toml").server.http_token == "x"
    assert parse_config('[server]\nhttp = "[::1]:8053"\n', "g.toml").server.http is not None


def test_control_token_problem_and_loopback() -> None:
    assert control_token_problem("127.0.0.1", None) is None
    assert control_token_problem("::1", "") is None
    assert control_token_problem("192.0.2.1", "t") is None
    assert control_token_problem("::", None) == "the control API on :: is not loopback " \
        "and has no token"


def test_is_loopback() -> None:
    for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        assert is_loopback(h), h
    for h in ("0.0.0.0", "::", "192.0.2.1", "example.com", "", "127.0.0.1.nip.io"):
        assert not is_loopback(h), h


def test_serve_and_check_refuse_a_control_api_off_loopback_without_a_token(
        tmp_path: Path) -> None:
    """Refused before any socket is opened: nothing listens off loopback in this test."""
    serve = subprocess.run(
        geodns_cmd("serve", "--no-config", "--zones", str(DATA_DIR / "interop"),
                   "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"),
        capture_output=True, text=True, timeout=30)
    assert serve.returncode == 1, serve.stderr
    assert "geodns: the control API on 0.0.0.0 is not loopback and has no token" \
        in serve.stderr
    config = tmp_path / "geodns.toml"
    config.write_text('[server]\nhttp = "0.0.0.0:8053"\n')
    check = subprocess.run(
        geodns_cmd("check", "--config", str(config), "--zones", str(DATA_DIR / "interop")),
        capture_output=True, text=True, timeout=30)
    assert check.returncode == 1
    assert f"{config}:2: server.http: the control API on 0.0.0.0 is not loopback" \
        in check.stdout
