"""Reading a config file: the shipped example, empty files, TOML syntax, unreadable files."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from geodns.config import (
    ConfigError,
    default_geoip_database,
    load_config,
)
from tests.config.cases import POPS, REPO, SHIPPED, config_of, problems_of


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


def test_empty_file_is_the_default_config() -> None:
    cfg = config_of("")
    assert cfg.pools == {} and cfg.server.udp_size == 1232


def test_toml_syntax_error() -> None:
    problems = problems_of('[server]\nudp_size = 1232\nlisten = [\n  "a",\n  b\n]\n')
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
