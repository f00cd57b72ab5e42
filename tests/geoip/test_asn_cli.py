"""``[geoip] asn_database`` in the commands that already use it: check and explain."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodns.cli import main
from tests.helpers.paths import REPO_ROOT
from tests.select.mmdb_writer import city, write_asn_mmdb, write_mmdb


def _config(tmp_path: Path, asn_db: Path) -> Path:
    shipped = (REPO_ROOT / "geodns.toml").read_text()
    assert shipped.count("\n[geoip]\n") == 1
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(shipped.replace("\n[geoip]\n", f'\n[geoip]\nasn_database = "{asn_db}"\n')
                   .replace('zones = "zones"', f'zones = "{REPO_ROOT / "zones"}"'))
    return cfg


def test_explain_names_the_clients_network(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = write_asn_mmdb(tmp_path / "asn.mmdb", [("81.2.64.0/18", 64510, "Example Access")])
    cfg = _config(tmp_path, db)
    assert main(["explain", "www.example.com", "--client", "81.2.69.160", "--config",
                 str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "#1 fra" in out
    assert "asn: AS64510 Example Access (81.2.64.0/18)" in out.splitlines()


def test_check_rejects_a_city_database_as_asn_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = write_mmdb(tmp_path / "city.mmdb", [("1.0.0.0/8", city("EU", "DE", 50.0, 8.0))],
                    database_type="GeoLite2-City")
    cfg = _config(tmp_path, db)
    assert main(["check", "--config", str(cfg)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{db}:0: a GeoLite2-City database, not an ASN database (want GeoLite2-ASN or "
        "GeoIP2-ISP)"]
