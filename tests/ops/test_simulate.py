"""geodns simulate: clients files, scenarios, capacity flags, plot, and agreement with
what a real ``geodns serve`` answers for the same clients over ECS."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import dns.edns
import dns.rdatatype
import pytest

from geodns.cli import main as cli_main
from geodns.config import load_config, parse_config
from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.querylog import QueryLog
from geodns.ops.simulate import (
    NO_ANSWER,
    ClientsError,
    read_clients,
    scenario_snapshot,
    simulate,
)
from geodns.select.selector import Selector
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server


def main(args: list[str]) -> int:
    """``geodns simulate ARGS``, through the one command line."""
    return cli_main(["simulate", *args])

NETS_CONFIG = """
[server]
http = ""

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10", "192.0.2.11"]
capacity = 400

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
capacity = 1000

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]

[pools.web]
strategy = "geo"
nets."10.1.0.0/16" = ["fra", "iad"]
nets."10.2.0.0/16" = ["iad", "fra"]
default = ["sin", "iad"]
"""

CLIENTS_CSV = """\
ip_or_prefix,weight
# Frankfurt customers
10.1.0.0/24,300
10.1.7.9/24,100
10.2.0.5,200
192.0.2.77,50
"""


@pytest.fixture
def nets_config(tmp_path: Path) -> Path:
    path = tmp_path / "geodns.toml"
    path.write_text(NETS_CONFIG)
    return path


@pytest.fixture
def clients_csv(tmp_path: Path) -> Path:
    path = tmp_path / "clients.csv"
    path.write_text(CLIENTS_CSV)
    return path


def test_read_csv(clients_csv: Path) -> None:
    clients = read_clients(clients_csv)
    assert [(c.address, c.prefix, c.weight) for c in clients] == [
        ("10.1.0.0", 24, 300.0), ("10.1.7.0", 24, 100.0), ("10.2.0.5", None, 200.0),
        ("192.0.2.77", None, 50.0)]
    no_header = read_clients("x.csv", "2001:db8::/32,5\n198.51.100.1\n")
    assert [(c.address, c.prefix, c.weight) for c in no_header] == [
        ("2001:db8::", 32, 5.0), ("198.51.100.1", None, 1.0)]


def test_read_csv_problems_have_lines() -> None:
    with pytest.raises(ClientsError) as exc:
        read_clients("c.csv", "ip,weight\n10.0.0.1,abc\nnot-an-ip,3\n10.0.0.2,-1\n1.2.3.4,1,2\n")
    assert exc.value.problems == [
        "c.csv:2: weight 'abc' is not a number",
        "c.csv:3: 'not-an-ip' is not an IP address or prefix",
        "c.csv:4: weight must be a finite number >= 0",
        "c.csv:5: expected 'ip_or_prefix,weight', got 3 columns",
    ]
    with pytest.raises(ClientsError, match="no clients"):
        read_clients("c.csv", "ip_or_prefix,weight\n# nothing\n")


def test_simulate_scenario_and_capacity(nets_config: Path, clients_csv: Path) -> None:
    config = load_config(nets_config)
    geo = GeoDB.open(config.geoip.database)
    try:
        sel = Selector(config, geo)
        clients = read_clients(clients_csv)
        r = simulate(config, sel, clients, pool="web",
                     scenario=scenario_snapshot(config, down=["fra"]))
    finally:
        geo.close()
    assert r.total == 650
    assert r.now == {"fra": 400.0, "iad": 200.0, "sin": 50.0}
    assert r.scenario == {"iad": 600.0, "sin": 50.0}
    assert r.over("now") == [] and r.over("scenario") == ["iad"]
    assert r.forced == {"fra": "down"}


def test_drain_address_and_all_down(nets_config: Path, clients_csv: Path) -> None:
    config = load_config(nets_config)
    sel = Selector(config, None)
    clients = read_clients(clients_csv)
    r = simulate(config, sel, clients, pool="web",
                 scenario=scenario_snapshot(config, drain=["iad/192.0.2.11"]))
    assert r.now["iad"] == 200.0  # iad's two addresses share it
    assert r.scenario["iad"] == 200.0  # one drained: the other takes all of it
    r = simulate(config, sel, clients, pool="web",
                 scenario=scenario_snapshot(config, down=["*"]))
    # all_down = fail_open: answers still go out (to the first choice)
    assert NO_ANSWER not in r.scenario and sum(r.scenario.values()) == 650
    with pytest.raises(ValueError, match="matches no POP"):
        scenario_snapshot(config, down=["frq"])
    with pytest.raises(ValueError, match="not an IP address"):
        scenario_snapshot(config, down=["fra/x"])


def test_cli_table_json_plot(nets_config: Path, clients_csv: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "chart.png"
    args = ["--config", str(nets_config), "--clients", str(clients_csv), "--down", "fra"]
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (a dependency)")
    assert main([*args, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "pool web, qtype A: 4 clients, 650.0 qps" in out
    assert "scenario: fra down" in out
    iad = next(line for line in out.splitlines() if line.startswith("iad"))
    assert "200.0" in iad and "600.0" in iad and "OVER CAPACITY (150% of 400.0 qps)" in iad
    assert "WARNING: the scenario pushes iad past capacity" in out
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    assert main([*args, "--drain", "sin", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "fra down, sin drained"
    assert report["pops"]["iad"]["scenario_qps"] == 650.0
    assert report["pops"]["iad"]["over_capacity_scenario"] is True
    assert report["pops"]["fra"]["now_share"] == pytest.approx(400 / 650)


def test_cli_errors(nets_config: Path, clients_csv: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--config", str(nets_config), "--clients", str(clients_csv)]
    assert main([*base, "--down", "lhr"]) == 1
    assert "'lhr' matches no POP" in capsys.readouterr().err
    assert main([*base, "--pool", "nope"]) == 1
    assert "unknown pool 'nope'" in capsys.readouterr().err
    assert main([*base, "--qtype", "BOGUS"]) == 1
    two_pools = tmp_path / "two.toml"
    two_pools.write_text(NETS_CONFIG + '\n[pools.other]\nstrategy = "failover"\n'
                         'pops = ["sin"]\n')
    assert main(["--config", str(two_pools), "--clients", str(clients_csv)]) == 1
    assert "choose one with --pool" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[pops.x]\nlat = 500\n")
    assert main(["--config", str(bad), "--clients", str(clients_csv)]) == 1
    assert f"{bad}:2: pops.x.lat" in capsys.readouterr().err


def test_query_log_as_clients(nets_config: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """A query log written by QueryLog is a clients file (weight 1 per line, --scale)."""
    log_path = tmp_path / "queries.log"

    async def write() -> None:
        log = QueryLog(log_path)
        await log.start()
        for _ in range(3):
            log.query("192.0.2.1", b"\x0a\x01\x00\x00", 24, "www.example.", 1, 0, "web",
                      ("fra",), 16, 60, 0.0001)
        log.query("10.2.0.5", None, None, "www.example.", 1, 0, "web", ("iad",), 16, 60,
                  0.0001)
        log.query("10.2.0.5", None, None, "static.example.", 1, 0, None, None, None, None,
                  0.0001)  # not steered: skipped
        await log.stop()

    asyncio.run(write())
    clients = read_clients(log_path)
    assert [(c.address, c.prefix, c.pool, c.qtype) for c in clients] == [
        ("10.1.0.0", 24, "web", 1)] * 3 + [("10.2.0.5", None, "web", 1)]
    assert main(["--config", str(nets_config), "--clients", str(log_path), "--scale", "10",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_qps"] == 40
    assert report["pops"]["fra"]["now_qps"] == 30 and report["pops"]["iad"]["now_qps"] == 10


# --------------------------------------------------------------------------- vs. server

SERVER_CONFIG = """
[server]
http = ""

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
capacity = 400

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]

[pops.gru]
lat = -23.5
lon = -46.6
ipv4 = ["192.0.2.40"]

[pops.syd]
lat = -33.9
lon = 151.2
ipv4 = ["192.0.2.50"]

[pools.www]
strategy = "nearest"
default = ["iad", "fra"]
"""

ZONE = """\
$ORIGIN sim.test.
$TTL 3600
@    IN SOA ns1.sim.test. hostmaster.sim.test. 1 7200 3600 1209600 300
     IN NS  ns1.sim.test.
ns1  IN A   192.0.2.1
www  300 IN DYNA www
"""

# Real networks from around the world (located by the packaged GeoLite2 database),
# a documentation prefix without a location (-> the pool's default), and IPv6.
WORLD_CLIENTS = """\
ip_or_prefix,weight
81.2.69.0/24,120
2.16.0.0/24,80
8.8.8.0/24,200
216.160.83.56/32,50
1.0.16.0/24,60
200.160.0.0/24,40
1.128.0.0/24,30
41.0.0.0/24,20
203.0.113.0/24,10
2a00:1450:4001::/48,70
"""


def test_prediction_matches_real_server(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "sim.test.zone").write_text(ZONE)
    config_path = tmp_path / "geodns.toml"
    config_path.write_text(SERVER_CONFIG)
    clients_path = tmp_path / "clients.csv"
    clients_path.write_text(WORLD_CLIENTS)
    config = parse_config(SERVER_CONFIG, config_path)
    owner = {a: name for name, pop in config.pops.items() for a in pop.ipv4}

    assert main(["--config", str(config_path), "--clients", str(clients_path), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    predicted_now = {p: v["now_qps"] for p, v in predicted["pops"].items() if v["now_qps"]}
    assert len(predicted_now) >= 4  # the clients really are spread over the world

    geo = GeoDB.open(config.geoip.database)
    selector = Selector(config, geo)
    served: dict[str, float] = defaultdict(float)
    with geodns_server(zones, ["--config", str(config_path)]) as srv:
        for c in read_clients(clients_path):
            assert c.prefix is not None
            q = make_query("www.sim.test.", "A",
                           options=[dns.edns.ECSOption(c.address, c.prefix)])
            reply = ask(srv.port, q)
            addresses = sorted(rd.address for rrset in reply.answer
                               if rrset.rdtype == dns.rdatatype.A for rd in rrset)
            expected = selector.select("www", 1, c.address, c.prefix,
                                       HealthSnapshot.all_up())
            assert addresses == sorted(expected.addresses), c.text
            for a in addresses:
                served[owner[a]] += c.weight / len(addresses)
    geo.close()
    assert dict(served) == pytest.approx(predicted_now)


def test_plot_labels_capacity_marks_title_and_resolution(nets_config: Path, clients_csv: Path,
                                                         tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra")
    import struct

    from geodns.ops.simulate import PLOT_DPI, figure

    path = tmp_path / "chart.png"
    args = ["--config", str(nets_config), "--clients", str(clients_csv), "--down", "fra"]
    assert main([*args, "--plot", str(path)]) == 0
    # Resolution: the PNG says 200 dpi (pHYs, pixels per metre) and is that large.
    data = path.read_bytes()
    phys = data.index(b"pHYs")
    ppm = struct.unpack(">I", data[phys + 4:phys + 8])[0]
    assert round(ppm * 0.0254) == PLOT_DPI
    width = struct.unpack(">I", data[16:20])[0]
    assert width >= 7 * PLOT_DPI

    config = load_config(nets_config)
    geo = GeoDB.open(config.geoip.database)
    try:
        r = simulate(config, Selector(config, geo), read_clients(clients_csv),
                     scenario=scenario_snapshot(config, down=["fra"]), pool="web",
                     scenario_text="fra down")
    finally:
        geo.close()
    r.source = "clients.csv"
    r.capacity["fra"] = 300.0  # over capacity already now
    fig = figure(r)
    ax = fig.axes[0]
    title = ax.get_title()
    assert "fra down" in title and "total 650.0 qps" in title and "from clients.csv" in title
    labels = [t.get_text() for t in ax.texts]
    assert "600\n150%" in labels  # iad under the scenario: qps and % of its 400 capacity
    assert "400\n133%" in labels  # fra now, over its 300
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "now: over capacity" in legend and "scenario: over capacity" in legend


def test_plot_without_matplotlib_says_how_to_get_it(
        nets_config: Path, clients_csv: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["--config", str(nets_config), "--clients", str(clients_csv), "--plot",
                 str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "--plot needs matplotlib, an optional extra: pip install 'geodns[plot]'" in err


EXAMPLE = Path(__file__).resolve().parents[2] / "examples"


def test_drill_plan_against_the_shipped_steering_example(
        capsys: pytest.CaptureFixture[str]) -> None:
    """examples/steering: spill shares from the loads file, the latency map, guards and
    capacity in load units; draining fra carries fra's load per query to iad."""
    args = ["--config", str(EXAMPLE / "steering" / "geodns.toml"), "--clients",
            str(EXAMPLE / "clients.csv"), "--pool", "www", "--loads",
            str(EXAMPLE / "steering" / "loads.json"), "--check"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fra  12,000.0    400.0" in out and "load 91% -> 91% of capacity" in out
    assert main([*args, "--drain", "fra", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    iad = report["pops"]["iad"]
    # fra carried 10,900 for 400 qps of these clients: all of it follows them to iad
    assert iad["scenario_load"] == pytest.approx(5200 + 10900)
    assert report["pops"]["fra"]["scenario_load"] == 0
    assert report["broken"] == [
        "max_share 0.6: iad predicted 0.73 of pool www (1.1k of 1.5k qps), now 0.47",
        "capacity: iad predicted 16.1k load, 134% of its 12.0k (now 5.2k, 43%)"]
    # one POP's load on the command line wins over the file
    assert main([*args, "--load", "fra=12500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pops"]["fra"]["now_load"] == 12500
    assert main([*args, "--load", "lhr=1"]) == 1
    assert "loads for unknown POPs: lhr" in capsys.readouterr().err


def test_bad_geoip_database_is_worded_like_check_and_serve(
        tmp_path: Path, clients_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The configured database is opened the one way the server opens it: the problem
    points at the config line; a --geoip file that will not open is named."""
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not an mmdb file\n" * 8)
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(f'[geoip]\ndatabase = "{broken}"\n' + NETS_CONFIG)
    assert main(["--config", str(cfg), "--clients", str(clients_csv)]) == 1
    assert f"\n{cfg}:2: geoip.database: cannot open {broken}: " in capsys.readouterr().err
    nets = tmp_path / "nets.toml"
    nets.write_text(NETS_CONFIG)
    assert main(["--config", str(nets), "--clients", str(clients_csv),
                 "--geoip", str(broken)]) == 1
    assert f"cannot open GeoIP database {broken}: " in capsys.readouterr().err
