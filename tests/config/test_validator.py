"""Problems reported all at once, each as FILE:LINE: key.path: problem."""

from __future__ import annotations

import pytest

from tests.config.cases import problems_of


def test_all_problems_reported_at_once_with_exact_lines() -> None:
    problems = problems_of("""\
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
    problems = problems_of("""\
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
    problems = problems_of(snippet + pops)
    if "[pops.x]" in snippet and "ipv6" in snippet:
        assert problems == [expected, "t.toml:4: pops.x.ipv6[1]: duplicate address ::1"]
    else:
        assert problems == [expected]
