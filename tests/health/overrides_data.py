"""Shared by the override tests: POPs to resolve rules against, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime

BASE = 1_800_000_000.0  # a fixed "file mtime" for relative times
DEC1 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
POLL = 0.1

CONFIG = """
[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20", "192.0.2.21"]
ipv6 = ["2001:db8::20"]

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]

[pops.syd]
lat = -33.9
lon = 151.2
ipv4 = ["192.0.2.50"]
"""
