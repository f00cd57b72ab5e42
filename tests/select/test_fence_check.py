"""What ``geodns check`` finds in fences against the real GeoIP data (file:line)."""

from __future__ import annotations

from pathlib import Path

from geodns.config import parse_config
from geodns.geoip.db import GeoDB
from geodns.select.fence_check import check_fences
from geodns.select.selector import Selector
from tests.select.conftest import POPS_TOML

FENCES = """
[pools.www]
strategy = "failover"
pops = ["iad", "fra", "syd"]

[pools.au]
strategy = "failover"
pops = ["syd"]

[fences.gb]
countries = ["GB"]
pops = ["fra"]
pools = ["www"]

[fences.eu]
continents = ["EU"]
pops = ["iad"]
pools = ["www"]
"""


def test_contradicting_fences_and_empty_cuts_reported_at_their_lines(
        real_db: GeoDB, tmp_path: Path) -> None:
    """GB is inside both fences, which allow no POP in common: reported at the later
    fence's pops, naming the other's line; pool www never answers British clients.  A
    fence that leaves a pool's rule nothing is reported at that rule."""
    text = POPS_TOML + FENCES + '\n[fences.us]\ncountries = ["US"]\npops = ["iad"]\n'
    path = tmp_path / "geodns.toml"
    path.write_text(text)
    config = parse_config(text, path)
    lines = text.splitlines()

    def line(needle: str, after: str) -> int:
        start = lines.index(after)
        return next(i + 1 for i, x in enumerate(lines) if i > start and x == needle)

    got = check_fences(config, Selector(config, real_db, warn=False))
    eu_pops = line('pops = ["iad"]', "[fences.eu]")
    gb_head = lines.index("[fences.gb]") + 1
    assert any(p.startswith(f"{path}:{eu_pops}: fences.eu.pops: contradicts fence gb "
                            f"({path}:{gb_head})") and "pool www can never answer them" in p
               for p in got), got
    au_pops = line('pops = ["syd"]', "[pools.au]")
    assert any(p.startswith(f"{path}:{au_pops}: pools.au.pops: fence us leaves clients of "
                            "fixed order (syd) no POP (it allows iad)") for p in got), got
    assert not any("pools.www" in p and "fence us " in p for p in got)  # www has iad
