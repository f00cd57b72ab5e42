"""Replacing the GeoIP database file is picked up without a restart (and a broken one
is rejected while the old database keeps answering)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dns.edns

from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server
from tests.select.mmdb_writer import city, write_mmdb

ZONE = """$ORIGIN geo.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  30 IN DYNA www
"""

CONFIG = """
[server]
http = ""

[geoip]
database = "{db}"

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pops.syd]
lat = -33.9
lon = 151.2
ipv4 = ["192.0.2.50"]

[pools.www]
strategy = "nearest"
"""


def where(port: int) -> list[str]:
    q = make_query("www.geo.test.", "A", options=[dns.edns.ECSOption("198.51.100.0", 24)])
    return [rd.to_text() for r in ask(port, q).answer for rd in r]


def replace(path: Path, networks: list) -> None:  # type: ignore[type-arg]
    tmp = path.with_name(".new.mmdb")
    write_mmdb(tmp, networks)
    os.replace(tmp, path)


def test_database_change_is_reloaded(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "geo.test.zone").write_text(ZONE)
    db = tmp_path / "geo.mmdb"
    replace(db, [("198.51.100.0/24", city("EU", "DE", 50.1, 8.7))])
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(CONFIG.format(db=db))
    with geodns_server(zones, ["--config", str(cfg), "--watch-interval", "0.2"]) as srv:
        assert where(srv.port) == ["192.0.2.20"]
        replace(db, [("198.51.100.0/24", city("OC", "AU", -33.9, 151.2))])
        deadline = time.monotonic() + 8
        while where(srv.port) != ["192.0.2.50"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert where(srv.port) == ["192.0.2.50"]

        db.write_bytes(b"this is not an mmdb file")
        time.sleep(1.5)
        assert where(srv.port) == ["192.0.2.50"]  # the last good database still answers
        assert srv.alive()
        assert "still serving the previous" in srv.stderr_text()


def test_check_reports_an_unreadable_database_with_its_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "geo.test.zone").write_text(ZONE)
    (tmp_path / "geo.mmdb").write_bytes(b"not an mmdb")
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "geo.mmdb"))
    r = subprocess.run([sys.executable, "-m", "geodns", "check", "--config", str(cfg),
                        "--zones", str(zones)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stdout.startswith(f"{cfg}:6: geoip.database: cannot open {tmp_path}/geo.mmdb")
