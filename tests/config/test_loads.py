"""[loads.NAME] feeds and the POP keys that name them: defaults, every problem located."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from geodns.config import Config, ConfigError, LoadFeed, parse_config

POP = """
[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
"""


def _ok(text: str, name: str = "/etc/geodns/t.toml") -> Config:
    return parse_config(textwrap.dedent(text) + POP, name)


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text) + POP, "t.toml")
    return info.value.problems


def test_three_feed_types_with_their_defaults() -> None:
    cfg = _ok("""
        [loads.disk]
        type = "file"
        path = "loads/now.csv"

        [loads.api]
        type = "http"
        url = "http://127.0.0.1:8080/loads.json"

        [loads.prom]
        type = "prometheus"
        url = "http://[::1]:9090"
        query = 'sum by (pop) (rate(http_requests_total[1m]))'
        label = "site"
        interval = 15
        max_age = 120
        timeout = 2.5
        """)
    assert cfg.loads["disk"] == LoadFeed(name="disk", type="file",
                                         path=Path("/etc/geodns/loads/now.csv"), format="csv",
                                         interval=1.0, max_age=60.0)
    assert cfg.loads["api"] == LoadFeed(name="api", type="http",
                                        url="http://127.0.0.1:8080/loads.json",
                                        interval=10.0, timeout=3.0, max_age=60.0)
    prom = cfg.loads["prom"]
    assert (prom.url, prom.label, prom.interval, prom.max_age, prom.timeout) == (
        "http://[::1]:9090", "site", 15.0, 120.0, 2.5)
    assert prom.query == "sum by (pop) (rate(http_requests_total[1m]))"


def test_default_max_age_covers_three_polls() -> None:
    cfg = _ok('[loads.a]\ntype = "http"\nurl = "http://127.0.0.1/"\ninterval = 45\n')
    assert cfg.loads["a"].max_age == 135.0


def test_pop_names_its_feed_and_key() -> None:
    cfg = _ok("""
        [loads.api]
        type = "http"
        url = "http://127.0.0.1:8080/loads.json"

        [pops.iad]
        lat = 38.9
        lon = -77.0
        ipv4 = ["192.0.2.10"]
        capacity = 5000
        load = "api"
        load_key = "IAD1"
        """)
    iad, fra = cfg.pops["iad"], cfg.pops["fra"]
    assert (iad.load, iad.load_key, iad.feed_key, iad.capacity) == ("api", "IAD1", "IAD1", 5000)
    assert (fra.load, fra.load_key, fra.feed_key) == (None, None, "fra")


@pytest.mark.parametrize(("text", "expected"), [
    ('[loads.a]\ntype = "ftp"\n', "t.toml:2: loads.a.type: must be one of file, http, "
     "prometheus; got 'ftp'"),
    ('[loads.a]\ntype = "file"\n', "t.toml:1: loads.a.path: missing required key"),
    ('[loads.a]\ntype = "file"\npath = "x.txt"\nformat = "xml"\n',
     "t.toml:4: loads.a.format: must be one of json, csv; got 'xml'"),
    ('[loads.a]\ntype = "http"\nurl = "127.0.0.1/x"\n',
     "t.toml:3: loads.a.url: expected an http:// or https:// URL, got '127.0.0.1/x'"),
    ('[loads.a]\ntype = "http"\nurl = "http://127.0.0.1:99999/"\n',
     "t.toml:3: loads.a.url: bad port in 'http://127.0.0.1:99999/'"),
    ('[loads.a]\ntype = "http"\nurl = "http://127.0.0.1/"\ninterval = 30\nmax_age = 30\n',
     "t.toml:5: loads.a.max_age: must be greater than interval (30): otherwise data is "
     "stale before the next poll"),
    ('[loads.a]\ntype = "http"\nurl = "http://127.0.0.1/"\ninterval = 2\ntimeout = 2\n',
     "t.toml:5: loads.a.timeout: must be less than interval (2)"),
    ('[loads.a]\ntype = "prometheus"\nurl = "http://127.0.0.1:9090"\n',
     "t.toml:1: loads.a.query: missing required key"),
    ('[loads.a]\ntype = "prometheus"\nurl = "http://127.0.0.1:9090"\nquery = " "\n',
     "t.toml:4: loads.a.query: must not be empty"),
    ('[loads.a]\ntype = "prometheus"\nurl = "http://127.0.0.1:9090"\nquery = "up"\n'
     'label = "pop-name"\n', "t.toml:5: loads.a.label: not a Prometheus label name: "
     "'pop-name'"),
    ('[loads.a]\ntype = "file"\npath = "x.json"\nquery = "up"\n',
     "t.toml:4: loads.a.query: unknown key for load feed type 'file'"),
    ('[loads."a b"]\ntype = "file"\npath = "x.json"\n',
     "t.toml:1: loads.\"a b\": invalid load feed name 'a b' (letters, digits, '_', '-', '.'; "
     "max 63)"),
    ('[loads.a]\ntype = "http"\nurl = "http://127.0.0.1/"\n'
     '[pops.x]\nlat = 1\nlon = 1\nipv4 = ["192.0.2.1"]\nload = "b"\n',
     "t.toml:8: pops.x.load: unknown load feed 'b'"),
    ('[loads.api]\ntype = "http"\nurl = "http://127.0.0.1/"\n'
     '[pops.x]\nlat = 1\nlon = 1\nipv4 = ["192.0.2.1"]\nload = "apo"\n',
     "t.toml:8: pops.x.load: unknown load feed 'apo'; did you mean 'api'?"),
    ('[pops.x]\nlat = 1\nlon = 1\nipv4 = ["192.0.2.1"]\nload = "b"\n',
     "t.toml:5: pops.x.load: unknown load feed 'b' (no [loads.NAME] sections)"),
    ('[pops.x]\nlat = 1\nlon = 1\nipv4 = ["192.0.2.1"]\nload_key = "X"\n',
     "t.toml:5: pops.x.load_key: has no effect without load = \"FEED\""),
])
def test_problems(text: str, expected: str) -> None:
    assert _problems(text) == [expected]
