"""geodns.toml parsing: the shipped example, defaults, and exact error reporting."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from geodns.config import (
    Config,
    ConfigError,
    HostPort,
    TomlLocator,
    default_geoip_database,
    load_config,
    parse_config,
    parse_hostport,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "geodns.toml"


def _problems(text: str, name: str = "t.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), name)
    return info.value.problems


def _ok(text: str, name: str = "/etc/geodns/t.toml") -> Config:
    return parse_config(textwrap.dedent(text), name)


POPS = """
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8:10::1"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
"""


# --------------------------------------------------------------------------- shipped


def test_shipped_example_loads_with_exact_pops() -> None:
    cfg = load_config(SHIPPED)
    expected = {
        "iad": (38.9, -77.0, "192.0.2.10", "2001:db8:10::1"),
        "fra": (50.1, 8.7, "192.0.2.20", "2001:db8:20::1"),
        "sin": (1.35, 103.8, "192.0.2.30", "2001:db8:30::1"),
        "gru": (-23.5, -46.6, "192.0.2.40", "2001:db8:40::1"),
        "syd": (-33.9, 151.2, "192.0.2.50", "2001:db8:50::1"),
    }
    assert set(cfg.pops) == set(expected)
    for name, (lat, lon, v4, v6) in expected.items():
        pop = cfg.pops[name]
        assert (pop.lat, pop.lon, pop.ipv4, pop.ipv6) == (lat, lon, (v4,), (v6,))
        assert pop.health is None  # no checks against documentation addresses
    assert cfg.pools["www"].strategy == "nearest"
    assert cfg.pools["www"].pops == ("iad", "fra", "sin", "gru", "syd")
    api = cfg.pools["api"]
    assert api.strategy == "geo"
    assert {k: v[0] for k, v in api.continent.items()} == {
        "NA": "iad", "EU": "fra", "AS": "sin", "SA": "gru", "OC": "syd", "AF": "fra"}
    assert api.default[0] == "iad"
    assert cfg.checks == {}
    assert cfg.geoip.database == default_geoip_database()
    assert cfg.server.zones == REPO / "zones"


def test_shipped_example_checks_are_loopback_only() -> None:
    for check in load_config(SHIPPED).checks.values():
        assert check.address is not None and ipaddress.ip_address(check.address).is_loopback


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


def test_empty_file_is_the_default_config() -> None:
    cfg = _ok("")
    assert cfg.pools == {} and cfg.server.udp_size == 1232


# --------------------------------------------------------------------------- values


def test_server_section_and_relative_paths() -> None:
    cfg = _ok("""
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
    assert _ok('[server]\nhttp = ""\n').server.http is None


def test_explain_allow_matches_v4_mapped() -> None:
    cfg = _ok('[explain]\nallow = ["10.0.0.0/8", "2001:db8::/32"]\n')
    assert cfg.explain.allows("10.2.3.4")
    assert cfg.explain.allows("::ffff:10.2.3.4")
    assert cfg.explain.allows("2001:db8::5")
    assert not cfg.explain.allows("127.0.0.1")
    assert not cfg.explain.allows("junk")


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


def test_pools_of_every_strategy() -> None:
    cfg = _ok(POPS + """
        [pops.cdn1]
        lat = 0
        lon = 0
        cname = "edge1.example.net"

        [pools.g]
        strategy = "geo"
        continent.eu = ["fra", "iad"]
        country.us = ["iad"]
        subdivision."de-he" = ["fra"]
        nets = { "10.0.0.0/8" = ["iad"], "2001:db8::/32" = ["fra"] }
        default = ["iad"]

        [pools.n]
        strategy = "nearest"
        pops = ["iad", "fra"]
        answers = 2

        [pools.f]
        strategy = "failover"
        pops = ["fra", "iad"]
        all_down = "servfail"

        [pools.w]
        strategy = "weighted"
        pops = ["iad", "fra"]
        weights = { fra = 5 }

        [pools.a]
        strategy = "all"
        pops = ["iad", "fra"]
        ttl = 30
        ttl_on_failure = 5

        [pools.c]
        strategy = "failover"
        pops = ["cdn1"]
    """)
    g = cfg.pools["g"]
    assert dict(g.continent) == {"EU": ("fra", "iad")}
    assert dict(g.country) == {"US": ("iad",)}
    assert dict(g.subdivision) == {"DE-HE": ("fra",)}
    assert [(str(n), p) for n, p in g.nets] == [("10.0.0.0/8", ("iad",)),
                                               ("2001:db8::/32", ("fra",))]
    assert g.ttl == 60 and g.ttl_on_failure == 10 and g.answers == 1
    assert g.all_down == "fail_open"
    n = cfg.pools["n"]
    assert n.pops == ("iad", "fra") and n.answers == 2 and n.default == ()
    assert cfg.pools["f"].all_down == "servfail"
    assert dict(cfg.pools["w"].weights) == {"iad": 1.0, "fra": 5.0}
    a = cfg.pools["a"]
    assert (a.answers, a.ttl, a.ttl_on_failure) == (None, 30, 5)  # all: unlimited
    assert cfg.pops["cdn1"].cname == "edge1.example.net."


def test_geo_default_falls_back_to_pops() -> None:
    cfg = _ok(POPS + '[pools.g]\nstrategy = "geo"\npops = ["fra", "iad"]\n')
    assert cfg.pools["g"].default == ("fra", "iad")


def test_checks_defaults_and_types() -> None:
    cfg = _ok("""
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


# --------------------------------------------------------------------------- errors


def test_tcp_limits_are_checked_with_their_line() -> None:
    problems = _problems("""\
        [server]
        tcp_message_timeout = 0
        tcp_max_connections_per_client = 0
    """, "geodns.toml")
    assert problems == [
        "geodns.toml:2: server.tcp_message_timeout: must be greater than 0",
        "geodns.toml:3: server.tcp_max_connections_per_client: must be at least 1",
    ]


def test_all_problems_reported_at_once_with_exact_lines() -> None:
    problems = _problems("""\
        [server]
        listen = ["127.0.0.1:53", "1.2.3.4:99999"]
        udp_size = 100
        tcp_idel_timeout = 5

        [checks.web]
        type = "tcp"
        interval = 2
        path = "/x"

        [pops.iad]
        lat = 38.9
        lon = -277.0
        ipv4 = ["192.0.2.10", "2001:db8::1"]
        health = "webb"

        [pops.fra]
        lon = 8.7
        ipv4 = ["192.0.2.20"]

        [pools.www]
        stratgy = "nearest"

        [pools.api]
        strategy = "geo"
        continent.EU = ["fra", "ams"]
        continent.XX = ["iad"]
        country = { us = ["iad"], USA = ["iad"] }
        subdivision."US-CA" = ["iad", "iad"]
        nets = { "10.0.0.0/8" = ["iad"], "10.1.2.3/16" = ["fra"] }
        weights = { iad = 3 }
        default = [
          "iad",
          "nope",
        ]
    """, "geodns.toml")
    assert problems == [
        "geodns.toml:2: server.listen[1]: expected \"addr:port\" or \"[v6addr]:port\", "
        "got '1.2.3.4:99999'",
        "geodns.toml:3: server.udp_size: must be at least 512",
        "geodns.toml:4: server.tcp_idel_timeout: unknown key; did you mean 'tcp_idle_timeout'?",
        "geodns.toml:6: checks.web.timeout: must be less than interval (2)",
        "geodns.toml:6: checks.web.port: missing required key",
        "geodns.toml:9: checks.web.path: unknown key for check type 'tcp'",
        "geodns.toml:13: pops.iad.lon: must be at least -180",
        "geodns.toml:14: pops.iad.ipv4[1]: invalid IPv4 address '2001:db8::1'",
        "geodns.toml:15: pops.iad.health: unknown check 'webb'; did you mean 'web'?",
        "geodns.toml:17: pops.fra.lat: missing required key",
        "geodns.toml:21: pools.www.strategy: missing required key",
        "geodns.toml:22: pools.www.stratgy: unknown key; did you mean 'strategy'?",
        "geodns.toml:26: pools.api.continent.EU[1]: unknown POP 'ams'",
        "geodns.toml:27: pools.api.continent.XX: unknown continent code 'XX' "
        "(one of AF, AN, AS, EU, NA, OC, SA)",
        "geodns.toml:28: pools.api.country.USA: expected an ISO 3166-1 alpha-2 country "
        "code, got 'USA'",
        "geodns.toml:29: pools.api.subdivision.US-CA[1]: duplicate POP 'iad'",
        "geodns.toml:30: pools.api.nets.\"10.1.2.3/16\": '10.1.2.3/16' has host bits set "
        "(did you mean '10.1.0.0/16'?)",
        "geodns.toml:31: pools.api.weights: unknown key for strategy 'geo'",
        "geodns.toml:34: pools.api.default[1]: unknown POP 'nope'",
    ]


def test_error_lines_in_inline_tables_and_header_styles() -> None:
    problems = _problems("""\
        [pops]
        iad = { lat = 1, lon = 2, ipv4 = ["1.2.3.4"], wieght = 3 }

        [pools."my.pool"]
        strategy = "failover"
        pops = ["iad"]
        ttl = "60"

        [ pools . other ]
        strategy = 'weighted'
        pops = ['iad']
        weights.iad = 0
    """)
    assert problems == [
        "t.toml:2: pops.iad.wieght: unknown key; did you mean 'weight'?",
        "t.toml:7: pools.\"my.pool\".ttl: expected an integer, got string",
        "t.toml:12: pools.other.weights: every POP has weight 0",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[pools.p]\nstrategy = "random"\n',
         "t.toml:2: pools.p.strategy: must be one of geo, nearest, failover, weighted, all, "
         "latency; got 'random'"),
        ('[pools.p]\nstrategy = "failover"\n',
         "t.toml:1: pools.p.pops: missing required key"),
        ('[pools.p]\nstrategy = "geo"\n',
         "t.toml:1: pools.p.default: missing required key (a geo pool needs a default list, "
         "or pops)"),
        ('[pools.p]\nstrategy = "failover"\npops = []\n',
         "t.toml:3: pools.p.pops: must not be empty"),
        ('[pools.p]\nstrategy = "all"\npops = ["iad"]\nanswers = 0\n',
         "t.toml:4: pools.p.answers: must be at least 1"),
        ('[pools.p]\nstrategy = "all"\npops = ["iad"]\nall_down = "panic"\n',
         "t.toml:4: pools.p.all_down: must be one of fail_open, nodata, servfail; got 'panic'"),
        ('[pools.p]\nstrategy = "nearest"\npops = ["iad"]\ndefault = ["fra"]\n',
         "t.toml:4: pools.p.default[0]: POP 'fra' is not in pools.p.pops"),
        ('[pools.p]\nstrategy = "weighted"\npops = ["iad"]\nweights = { fra = 1 }\n',
         "t.toml:4: pools.p.weights.fra: POP 'fra' is not in pools.p.pops"),
        ('[pools.p]\nstrategy = "geo"\ndefault = ["iad"]\nsubdivision.CA = ["iad"]\n',
         "t.toml:4: pools.p.subdivision.CA: expected an ISO 3166-2 code like \"US-CA\", "
         "got 'CA'"),
        ('[pools.p]\nstrategy = "geo"\ndefault = ["iad"]\nnets = { "10.0.0.0/33" = ["iad"] }\n',
         "t.toml:4: pools.p.nets.\"10.0.0.0/33\": invalid CIDR '10.0.0.0/33'"),
        ('[pools.p]\nstrategy = "geo"\ndefault = "iad"\n',
         "t.toml:3: pools.p.default: expected an array of POP names, got string"),
        ('[pools.p]\nstrategy = "failover"\npops = ["iad", 3]\n',
         "t.toml:3: pools.p.pops[1]: expected a POP name, got integer"),
        ('[pools."bad name"]\nstrategy = "failover"\npops = ["iad"]\n',
         "t.toml:1: pools.\"bad name\": invalid pool name 'bad name' (letters, digits, '_', "
         "'-', '.'; max 63)"),
        ("[pops.x]\nlat = 1\nlon = 2\n",
         "t.toml:1: pops.x: POP has no ipv4, ipv6 or cname"),
        ('[pops.x]\nlat = 1\nlon = 2\ncname = "a..b"\n',
         "t.toml:4: pops.x.cname: invalid domain name 'a..b': A DNS label is empty."),
        ('[pops.x]\nlat = true\nlon = 2\nipv6 = ["::1", "::1"]\n',
         "t.toml:2: pops.x.lat: expected a number, got boolean"),
        ('[checks.c]\ntype = "ping"\n',
         "t.toml:2: checks.c.type: must be one of http, https, tcp, dns, external; got 'ping'"),
        ('[checks.c]\ntype = "http"\nexpect_status = [200, 700]\n',
         "t.toml:3: checks.c.expect_status[1]: expected an HTTP status code (100-599), "
         "got 700"),
        ('[checks.c]\ntype = "http"\ntarget = "address"\naddress = "127.0.0.1"\n',
         "t.toml:4: checks.c.address: an address override needs target = \"pop\""),
        ('[checks.c]\ntype = "dns"\nqtype = "BOGUS"\n',
         "t.toml:3: checks.c.qtype: unknown record type 'BOGUS'"),
        ('[checks.c]\ntype = "http"\ntimeout = 10\n',
         "t.toml:3: checks.c.timeout: must be less than interval (10)"),
        ('[checks.c]\ntype = "external"\ncommand = []\n',
         "t.toml:3: checks.c.command: must not be empty"),
        ('[geoip]\ndatabase = "/nonexistent/x.mmdb"\n',
         "t.toml:2: geoip.database: no such file: /nonexistent/x.mmdb"),
        ("[explain]\nenabled = 1\n",
         "t.toml:2: explain.enabled: expected a boolean, got integer"),
        ("server = 3\n", "t.toml:1: server: expected a table, got integer"),
        ("[serverr]\n", "t.toml:1: serverr: unknown key; did you mean 'server'?"),
    ],
)
def test_single_problem(snippet: str, expected: str) -> None:
    pops = '\n[pops.iad]\nlat = 1\nlon = 2\nipv4 = ["192.0.2.1"]\n' \
           '\n[pops.fra]\nlat = 1\nlon = 2\nipv4 = ["192.0.2.2"]\n'
    problems = _problems(snippet + pops)
    if "[pops.x]" in snippet and "ipv6" in snippet:
        assert problems == [expected, "t.toml:4: pops.x.ipv6[1]: duplicate address ::1"]
    else:
        assert problems == [expected]


def test_nearest_defaults_to_every_pop() -> None:
    assert _ok(POPS + '[pools.n]\nstrategy = "nearest"\n').pools["n"].pops == ("iad", "fra")
    problems = _problems(POPS + """
        [pops.cdn]
        lat = 0
        lon = 0
        cname = "edge.example.net."

        [pools.n]
        strategy = "nearest"
    """)
    assert problems == ["t.toml:18: pools.n: mixes CNAME POPs (cdn) with address POPs "
                        "(iad, fra) (pops defaults to every POP)"]


def test_cname_and_address_pops_cannot_mix() -> None:
    problems = _problems(POPS + """
        [pops.cdn]
        lat = 0
        lon = 0
        cname = "edge.example.net."

        [pools.p]
        strategy = "failover"
        pops = ["iad", "cdn"]
    """)
    assert problems == ["t.toml:18: pools.p: mixes CNAME POPs (cdn) with address POPs (iad)"]


def test_toml_syntax_error() -> None:
    problems = _problems('[server]\nudp_size = 1232\nlisten = [\n  "a",\n  b\n]\n')
    assert problems == ["t.toml:5: <toml>: Invalid value (column 3)"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.problems == [f"{tmp_path / 'nope.toml'}:0: <file>: cannot read: "
                                   "No such file or directory"]


def test_load_config_reads_file(tmp_path: Path) -> None:
    p = tmp_path / "g.toml"
    p.write_text(POPS + '[pools.f]\nstrategy = "failover"\npops = ["fra"]\n')
    cfg = load_config(p)
    assert cfg.source == p and cfg.pools["f"].pops == ("fra",)
    assert cfg.server.zones == tmp_path / "zones"


def test_config_is_frozen() -> None:
    cfg = Config.default()
    with pytest.raises(AttributeError):
        cfg.server = cfg.server  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.pools["x"] = None  # type: ignore[index]


# --------------------------------------------------------------------------- locator


def test_locator_finds_every_kind_of_key() -> None:
    text = textwrap.dedent('''\
        # comment [not.a.table]
        top = "x # not a comment"
        [a]
        b.c = 1
        "quoted.key" = { x = 1, y = [1,
          2] }
        s = """multi
        line [fake]
        """
        lit = \'\'\'also
        multi\'\'\'
        arr = [
          { k = 1 },  # c
          "two",
        ]
        [[aot]]
        v = 1
        [[aot]]
        v = 2
        [a.deep."x y"]
        z = 3
    ''')
    loc = TomlLocator(text)
    assert loc.line(("top",)) == 2
    assert loc.line(("a",)) == 3
    assert loc.line(("a", "b", "c")) == 4
    assert loc.line(("a", "quoted.key", "y", 1)) == 6
    assert loc.line(("a", "s")) == 7
    assert loc.line(("a", "lit")) == 10
    assert loc.line(("a", "arr", 0, "k")) == 13
    assert loc.line(("a", "arr", 1)) == 14
    assert loc.line(("aot", 1, "v")) == 19
    assert loc.line(("a", "deep", "x y", "z")) == 21
    assert loc.line(("a", "missing")) == 3  # falls back to the table
    assert loc.line(("nothing",)) == 1
