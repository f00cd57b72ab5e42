"""Shared by the config tests: the shipped config, a parse that must fail or pass."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from geodns.config import Config, ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "geodns.toml"


def problems_of(text: str, name: str = "t.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), name)
    return info.value.problems


def config_of(text: str, name: str = "/etc/geodns/t.toml") -> Config:
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
