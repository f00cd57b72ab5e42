"""``[fences.NAME]`` and a pool's experiment ``arms``: parsed, or FILE:LINE problems."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from geodns.config import Arm, Config
from tests.config.test_steering import _ok, _problems

POOLS = """
[pools.www]
strategy = "failover"
pops = ["iad", "fra"]

[pools.api]
strategy = "failover"
pops = ["sin", "fra"]
"""


def test_fence_and_arms_parsed(tmp_path: Path) -> None:
    cfg: Config = _ok(POOLS.replace('pops = ["iad", "fra"]', 'pops = ["iad", "fra"]\n'
                                    'arms = { control = 90, new-edge = { weight = 10, '
                                    'pops = ["fra"] } }\nsalt = "exp1"') + """
[fences.us-only]
countries = ["us"]
continents = ["NA"]
subdivisions = ["US-CA"]
nets = ["198.51.100.0/24", "2001:db8:1::/48"]
pops = ["iad"]
on_empty = "nodata"
pools = ["www"]
""", tmp_path)
    fence = cfg.fences["us-only"]
    assert fence.countries == {"US"} and fence.continents == {"NA"}
    assert fence.nets == (ipaddress.ip_network("198.51.100.0/24"),
                          ipaddress.ip_network("2001:db8:1::/48"))
    assert (fence.pops, fence.on_empty, fence.pools) == (("iad",), "nodata", ("www",))
    assert fence.applies_to("www") and not fence.applies_to("api")
    www = cfg.pools["www"]
    assert www.arms == (Arm("control", 90.0), Arm("new-edge", 10.0, ("fra",)))
    assert www.salt == "exp1"
    assert _ok(POOLS, tmp_path).fences == {}  # default: no fences


@pytest.mark.parametrize(("body", "problem"), [
    ('countries = ["US"]\npops = ["nope"]', "@3: fences.f.pops[0]: unknown POP 'nope'"),
    ('countries = ["USA"]\npops = ["iad"]', '@2: fences.f.countries[0]: expected an ISO '
     '3166-1 alpha-2 country code like "US", got \'USA\''),
    ('pops = ["iad"]', "@1: fences.f: selects no clients"),
    ('countries = ["US"]', "@1: fences.f.pops: missing required key"),
    ('countries = ["US"]\npops = ["iad"]\non_empty = "fail_open"', "@4: fences.f.on_empty:"),
    ('countries = ["US"]\npops = ["iad"]\npools = ["wwww"]',
     "@4: fences.f.pools[0]: unknown pool 'wwww'; did you mean 'www'?"),
    ('nets = ["10.0.0.0/33"]\npops = ["iad"]', "@2: fences.f.nets[0]:"),
    ('asn = [13335]\npops = ["iad"]', "@2: fences.f.asn: asn needs [geoip] asn_database"),
])
def test_fence_problems_have_file_line_and_key(tmp_path: Path, body: str,
                                               problem: str) -> None:
    problems = _problems(POOLS + "\n[fences.f]\n" + body + "\n", tmp_path)
    offset = len(POOLS.splitlines()) + 1
    shifted = []
    for p in problems:
        head, _, rest = p.partition(":@")
        n, _, tail = rest.partition(":")
        shifted.append(f"{head}:@{int(n) - offset}:{tail}" if n.isdigit() else p)
    assert any(problem in p for p in shifted), shifted


@pytest.mark.parametrize(("arms", "problem"), [
    ('arms = { a = { weight = 5, pops = ["sin"] } }',
     "pools.www.arms.a.pops[0]: POP 'sin' is not a candidate of this pool"),
    ("arms = { a = 0 }", "pools.www.arms: every arm has weight 0"),
    ('arms = { a = { weight = 5, pool = "www" } }', "pools.www.arms.a.pool: names its own"),
    ('arms = { a = { weight = 5, pool = "nope" } }', "pools.www.arms.a.pool: unknown pool"),
    ('salt = "x"', "pools.www.salt: has no effect without arms"),
])
def test_arm_problems(tmp_path: Path, arms: str, problem: str) -> None:
    problems = _problems(POOLS.replace('pops = ["iad", "fra"]',
                                       'pops = ["iad", "fra"]\n' + arms), tmp_path)
    assert any(problem in p and p.startswith("t.toml:@") for p in problems), problems


def test_arm_pool_must_stay_inside_the_fences(tmp_path: Path) -> None:
    """An arm handing www's clients to api would let them leave a fence covering only
    www: refused."""
    problems = _problems(POOLS.replace('pops = ["iad", "fra"]', 'pops = ["iad", "fra"]\n'
                                       'arms = { a = 1, b = { weight = 1, pool = "api" } }')
                         + '\n[fences.f]\ncountries = ["US"]\npops = ["iad"]\n'
                           'pools = ["www"]\n', tmp_path)
    assert any("pools.www.arms.b.pool: pool 'api' is not covered by fence 'f'" in p
               for p in problems), problems
