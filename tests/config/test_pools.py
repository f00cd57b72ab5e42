"""[pops.*] and [pools.*]: every strategy, defaults, what cannot be mixed."""

from __future__ import annotations

from tests.config.cases import POPS, config_of, problems_of


def test_pools_of_every_strategy() -> None:
    cfg = config_of(POPS + """
        [pops.cdn1]
        lat = 0
        lon = 0
        cname = "edge1.example.net"

        [pools.g]
        strategy = "geo"
        continent.eu = ["fra", "iad"]
        country.us = ["iad"]
        subdivision."de-he" = ["fra"]
        nets = { "10.0.0.0/8" = ["iad"], "2001:db8::/32" = ["fra"] }
        default = ["iad"]

        [pools.n]
        strategy = "nearest"
        pops = ["iad", "fra"]
        answers = 2

        [pools.f]
        strategy = "failover"
        pops = ["fra", "iad"]
        all_down = "servfail"

        [pools.w]
        strategy = "weighted"
        pops = ["iad", "fra"]
        weights = { fra = 5 }

        [pools.a]
        strategy = "all"
        pops = ["iad", "fra"]
        ttl = 30
        ttl_on_failure = 5

        [pools.c]
        strategy = "failover"
        pops = ["cdn1"]
    """)
    g = cfg.pools["g"]
    assert dict(g.continent) == {"EU": ("fra", "iad")}
    assert dict(g.country) == {"US": ("iad",)}
    assert dict(g.subdivision) == {"DE-HE": ("fra",)}
    assert [(str(n), p) for n, p in g.nets] == [("10.0.0.0/8", ("iad",)),
                                               ("2001:db8::/32", ("fra",))]
    assert g.ttl == 60 and g.ttl_on_failure == 10 and g.answers == 1
    assert g.all_down == "fail_open"
    n = cfg.pools["n"]
    assert n.pops == ("iad", "fra") and n.answers == 2 and n.default == ()
    assert cfg.pools["f"].all_down == "servfail"
    assert dict(cfg.pools["w"].weights) == {"iad": 1.0, "fra": 5.0}
    a = cfg.pools["a"]
    assert (a.answers, a.ttl, a.ttl_on_failure) == (None, 30, 5)  # all: unlimited
    assert cfg.pops["cdn1"].cname == "edge1.example.net."


def test_geo_default_falls_back_to_pops() -> None:
    cfg = config_of(POPS + '[pools.g]\nstrategy = "geo"\npops = ["fra", "iad"]\n')
    assert cfg.pools["g"].default == ("fra", "iad")


def test_nearest_defaults_to_every_pop() -> None:
    assert config_of(POPS + '[pools.n]\nstrategy = "nearest"\n').pools["n"].pops == ("iad", "fra")
    problems = problems_of(POPS + """
        [pops.cdn]
        lat = 0
        lon = 0
        cname = "edge.example.net."

        [pools.n]
        strategy = "nearest"
    """)
    assert problems == ["t.toml:18: pools.n: mixes CNAME POPs (cdn) with address POPs "
                        "(iad, fra) (pops defaults to every POP)"]


def test_cname_and_address_pops_cannot_mix() -> None:
    problems = problems_of(POPS + """
        [pops.cdn]
        lat = 0
        lon = 0
        cname = "edge.example.net."

        [pools.p]
        strategy = "failover"
        pops = ["iad", "cdn"]
    """)
    assert problems == ["t.toml:18: pools.p: mixes CNAME POPs (cdn) with address POPs (iad)"]
