"""The server-facing interface: merging secondary zones into the store, the clash
with a zone file (also reported by `geodns check`), and EDNS EXPIRE values."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.name
import pytest

from geodns.config import parse_config
from geodns.xfr.secondary import expired_copy
from geodns.xfr.service import XfrService, merge_zones
from geodns.zones.load import ZoneFileError
from geodns.zones.store import build_store
from tests.helpers.servers import geodns_cmd
from tests.xfr.zones import ORIGIN, one, text

OTHER = """$ORIGIN other.test.
@ 60 IN SOA ns1 hm 7 3600 600 1209600 300
  60 IN NS ns1
ns1 60 IN A 192.0.2.1
"""


def test_merge_adds_secondary_zones_and_refuses_a_clash() -> None:
    files = build_store({"/z/other.test.zone": OTHER})
    zone = one(3)
    merged = merge_zones(files, {zone.origin: zone})
    assert set(merged.serials()) == {"other.test.", ORIGIN}
    clash = one(4)
    clash.origin = dns.name.from_text("other.test.")
    with pytest.raises(ZoneFileError) as info:
        merge_zones(files, {clash.origin: clash})
    assert info.value.problems == ['/z/other.test.zone:1: zone other.test. is read from '
                                   'this file and also declared as [secondary."other.test."] '
                                   'in the config']
    dead = merge_zones(files, {zone.origin: expired_copy(zone)})
    assert dead.lookup(dns.name.from_text("www." + ORIGIN), 1).rcode == 2  # SERVFAIL
    assert merged.lookup(dns.name.from_text("www." + ORIGIN), 1).rcode == 0


def test_expire_remaining(tmp_path: Path) -> None:
    config = parse_config(f'[secondary."{ORIGIN}"]\nprimaries = ["127.0.0.1:9"]\n',
                          tmp_path / "geodns.toml")
    copy = tmp_path / "xfr-state" / "secondary" / "unit.test.zone"
    copy.parent.mkdir(parents=True)
    copy.write_text(text(3, expire=1000))
    service = XfrService(config, install=lambda zones: [])
    files = build_store({"/z/other.test.zone": OTHER})
    store = service.fitted_store(files, lambda s: [])
    service.loaded(store)
    assert service.expire_remaining(dns.name.from_text("other.test.")) == 1209600  # SOA
    left = service.expire_remaining(dns.name.from_text(ORIGIN))  # counted from the copy
    assert left is not None and 990 <= left <= 1000
    assert service.expire_remaining(dns.name.from_text("nothere.test.")) is None


def test_check_reports_a_zone_that_is_both_a_file_and_secondary(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "other.test.zone").write_text(OTHER)
    config = tmp_path / "geodns.toml"
    config.write_text('[secondary."other.test."]\nprimaries = ["127.0.0.1:53"]\n')
    r = subprocess.run(geodns_cmd("check", "--config", str(config), "--zones", str(zones)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{zones / 'other.test.zone'}:1: zone other.test. is read from this file and also " \
           'declared as [secondary."other.test."] in the config' in r.stdout
