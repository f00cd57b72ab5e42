"""[tsig.NAME], [transfer] and [secondary."zone."]: values, defaults, and every
problem as FILE:LINE: key.path: problem."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from geodns.config import ConfigError, HostPort, parse_config

SECRET = "l8uyAXzRkSBIePfhdq6Am5jEaJGp3tXAlq3lT/eFCzQ="


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "t.toml")
    return info.value.problems


def test_the_spellings_of_issue_11() -> None:
    config = parse_config(textwrap.dedent(f"""\
        [tsig.xfr-key]
        algorithm = "hmac-sha256"
        secret = "{SECRET}"

        [transfer]
        allow = ["127.0.0.0/8", "::1/128"]
        key = "xfr-key"
        notify = ["127.0.0.1:5300", "[::1]:5300", "127.0.0.2"]

        [secondary."example.net."]
        primaries = ["127.0.0.1:5301"]
        key = "xfr-key"

        [secondary."Example.ORG"]
        primaries = ["[::1]:5302"]
        """), "/etc/geodns/geodns.toml")
    key = config.tsig["xfr-key"]
    assert (key.name, key.algorithm, len(key.secret)) == ("xfr-key", "hmac-sha256", 32)
    assert config.transfer is not None
    assert config.transfer.allow == (ipaddress.ip_network("127.0.0.0/8"),
                                     ipaddress.ip_network("::1/128"))
    assert config.transfer.key == "xfr-key"
    assert config.transfer.notify == (HostPort("127.0.0.1", 5300), HostPort("::1", 5300),
                                      HostPort("127.0.0.2", 53))
    assert config.transfer.allows("127.0.0.9") and not config.transfer.allows("192.0.2.1")
    assert config.secondary["example.net."].primaries == (HostPort("127.0.0.1", 5301),)
    assert config.secondary["example.net."].key == "xfr-key"
    assert config.secondary["example.org."].key is None  # normalised name, no key
    assert config.state_dir == Path("/etc/geodns/xfr-state")
    assert config.transfer.journal_max_bytes == 1 << 20


def test_without_the_sections_nothing_changes() -> None:
    config = parse_config("", "/etc/geodns/geodns.toml")
    assert config.transfer is None and not config.secondary and not config.tsig
    assert config.state_dir is None  # a plain server writes no state


def test_every_problem_is_located() -> None:
    got = problems(f"""\
        [tsig.weak]
        algorithm = "hmac-md5"
        secret = "{SECRET}"

        [tsig.typo]
        algorithm = "hmac-sha257"
        secret = "not base64!"
        colour = "blue"

        [tsig.empty]
        secret = ""

        [transfer]
        allow = ["127.0.0.1/8", "nonsense"]
        key = "nokey"
        notify = ["127.0.0.1:99999"]
        journal_max_bytes = -1
        alow = []

        [secondary."example.net."]
        key = "xfr"

        [secondary."bad..name"]
        primaries = ["127.0.0.1:53"]

        [secondary."example.org."]
        primaries = []
        """)
    assert got == [
        "t.toml:2: tsig.weak.algorithm: hmac-md5 is too weak; use one of hmac-sha256, "
        "hmac-sha384, hmac-sha512, hmac-sha224",
        "t.toml:6: tsig.typo.algorithm: must be one of hmac-sha256, hmac-sha384, "
        "hmac-sha512, hmac-sha224; got 'hmac-sha257'",
        "t.toml:7: tsig.typo.secret: not valid base64",
        "t.toml:8: tsig.typo.colour: unknown key",
        "t.toml:11: tsig.empty.secret: must not be empty",
        "t.toml:14: transfer.allow[0]: '127.0.0.1/8' has host bits set (did you mean "
        "'127.0.0.0/8'?)",
        "t.toml:14: transfer.allow[1]: invalid CIDR 'nonsense'",
        "t.toml:15: transfer.key: unknown TSIG key 'nokey' (keys: empty, typo, weak)",
        "t.toml:16: transfer.notify[0]: expected \"addr:port\" or \"[v6addr]:port\", got "
        "'127.0.0.1:99999'",
        "t.toml:17: transfer.journal_max_bytes: must be at least 0",
        "t.toml:18: transfer.alow: unknown key; did you mean 'allow'?",
        "t.toml:20: secondary.\"example.net.\".primaries: missing required key",
        "t.toml:21: secondary.\"example.net.\".key: unknown TSIG key 'xfr' (keys: empty, "
        "typo, weak)",
        "t.toml:23: secondary.\"bad..name\": invalid zone name 'bad..name': A DNS label "
        "is empty.",
        "t.toml:27: secondary.\"example.org.\".primaries: must not be empty",
    ]


def test_state_dir_relative_to_the_config() -> None:
    config = parse_config('[transfer]\nstate_dir = "var/xfr"\n', "/srv/dns/geodns.toml")
    assert config.state_dir == Path("/srv/dns/var/xfr")
    secondary_only = parse_config('[secondary."a.test."]\nprimaries = ["127.0.0.1:53"]\n',
                                  "/srv/dns/geodns.toml")
    assert secondary_only.state_dir == Path("/srv/dns/xfr-state")
    assert secondary_only.transfer is None
