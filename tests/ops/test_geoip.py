"""Which GeoIP database, how old: logged, on /status, in metrics and in `check`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from geodns.config import ConfigError, default_geoip_database, parse_config
from geodns.ops.geoip import GeoInfo, describe_record, read_info
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import geodns_cmd
from tests.select.mmdb_writer import city, write_mmdb

DAY = 86400


def test_age_and_staleness() -> None:
    now = 1_800_000_000.0
    old = GeoInfo("/db.mmdb", "GeoLite2-City", int(now - 100 * DAY), 45)
    assert old.age_days(now) == 100 and old.stale(now)
    warning = old.warning(now)
    assert warning is not None
    assert "/db.mmdb is 100 days old" in warning and "max_age_days = 45" in warning
    assert GeoInfo("/db", "X", int(now - 10 * DAY), 45).warning(now) is None
    assert not GeoInfo("/db", "X", int(now - 9000 * DAY), 0).stale(now)  # 0: never warn
    assert old.as_dict(now)["built"] == old.built()


def test_max_age_days_is_validated_and_defaults_to_45() -> None:
    assert parse_config("", "g.toml").geoip.max_age_days == 45
    assert parse_config("[geoip]\nmax_age_days = 10\n", "g.toml").geoip.max_age_days == 10
    with pytest.raises(ConfigError) as info:
        parse_config("[geoip]\nmax_age_days = -1\n", "g.toml")
    assert info.value.problems[0].startswith("g.toml:2: geoip.max_age_days: ")


def test_read_info_and_full_record_from_the_bundled_database() -> None:
    info = read_info(default_geoip_database(), 45)
    assert (info.type, info.built(), info.description) == (
        "GeoLite2-City", "2018-07-03", "GeoLite2 City database")
    lines = describe_record(default_geoip_database(), "81.2.69.160")
    assert lines[0] == "record: Willesden, England (ENG), Brent (BEN), United Kingdom (GB, EU)"
    assert "postal NW10" in lines[1] and "time zone Europe/London" in lines[1]
    assert "network 81.2.68.0/23" in lines[1]
    assert describe_record(default_geoip_database(), "10.0.0.0/8") == [
        "record: 10.0.0.0 is not in the GeoIP database"]


def config_for(tmp_path: Path, db: Path) -> Path:
    text = (REPO_ROOT / "geodns.toml").read_text().replace(
        'zones = "zones"', f'zones = "{REPO_ROOT / "zones"}"')
    text = text.replace("[geoip]\n", f'[geoip]\ndatabase = "{db}"\n')
    path = tmp_path / "geodns.toml"
    path.write_text(text)
    return path


def test_check_prints_type_and_age_and_warns_only_when_old(tmp_path: Path) -> None:
    fresh = write_mmdb(tmp_path / "fresh.mmdb",
                       [("81.2.69.0/24", city("EU", "GB", 51.5, -0.1, name="London"))],
                       database_type="GeoIP2-City", build_epoch=int(time.time()) - 3 * DAY)
    r = subprocess.run(geodns_cmd("check", "--config", str(config_for(tmp_path, fresh))),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "geoip: GeoIP2-City built " in r.stderr and f"(3 days ago), {fresh}" in r.stderr
    assert "warning:" not in r.stderr

    old = config_for(tmp_path, default_geoip_database())
    r = subprocess.run(geodns_cmd("check", "--config", str(old)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr  # a warning, not a failure
    assert "geoip: GeoLite2-City built 2018-07-03" in r.stderr
    assert "warning: GeoIP database" in r.stderr and "max_age_days = 45" in r.stderr
