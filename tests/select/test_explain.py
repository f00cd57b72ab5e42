"""explain(): the same decision as select(), with everything that went into it."""

from __future__ import annotations

from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthSnapshot
from geodns.select.selector import Selector
from tests.select.conftest import make_config
from tests.select.test_selector import GEO_POOLS, NEAREST_POOLS, WEIGHTED_POOLS

A, AAAA = 1, 28


def _selector(db: GeoDB | None, budget: int = 0) -> Selector:
    return Selector(make_config(GEO_POOLS + NEAREST_POOLS + WEIGHTED_POOLS + """
        [pools.big]
        strategy = "all"
        pops = ["iad", "fra", "sin", "gru", "syd"]
    """), db)


def test_explain_geo_rule_health_and_answer(tiny_db: GeoDB) -> None:
    s = _selector(tiny_db)
    h = HealthSnapshot.build(real={"fra": "down"}, overrides={"iad": "up"}, generation=2)
    e = s.explain("geo", A, "2.1.1.1", 24, h)
    assert e.selection == s.select("geo", A, "2.1.1.1", 24, h)
    assert e.rule == "continent.EU"
    assert e.geoip_network == "2.1.0.0/16"
    assert e.location is not None and e.location.country == "DE"
    assert [(c.pop, c.state, c.real, c.forced, c.chosen, c.skipped) for c in e.candidates] == [
        ("fra", "down", "down", None, False, True),
        ("iad", "up", "up", "up", True, False),
    ]
    assert e.scope_network == "2.1.0.0/16"
    lines = e.lines()
    assert lines[0] == "pool geo (geo) qtype A client 2.1.1.1 ecs=/24"
    assert lines[1].startswith("geoip 2.1.0.0/16: continent=EU country=DE subdivision=DE-HE")
    assert "rule: continent.EU" in lines
    assert "#1 fra down [skipped]" in lines
    assert "#2 iad up (real up, forced up) [CHOSEN]" in lines
    assert "   192.0.2.10 up *" in lines
    assert "answer A ttl=10 scope=/16 (2.1.0.0/16) pops=iad" in lines
    assert "   192.0.2.10" in lines
    assert any(line.startswith("note: ttl_on_failure: passed over fra") for line in lines)


def test_explain_accepts_packed_clients(tiny_db: GeoDB) -> None:
    e = _selector(tiny_db).explain("geo", A, bytes([2, 1, 1, 1]), 24, HealthSnapshot.all_up())
    assert e.client == "2.1.1.1" and e.rule == "continent.EU"


def test_explain_nets_and_scope_reason(tiny_db: GeoDB) -> None:
    e = _selector(tiny_db).explain("geo", A, "1.2.3.4", None, HealthSnapshot.all_up())
    assert e.rule == 'nets."1.2.3.0/24"'
    assert e.selection.scope == 25 and e.scope_network == "1.2.3.0/25"
    assert any("nets" in n for n in e.notes)


def test_explain_nearest_distances_and_widening(real_db: GeoDB) -> None:
    s = _selector(real_db, budget=16)
    e = s.explain("near", A, "81.2.69.0", 24, HealthSnapshot.all_up())
    assert e.rule == "nearest by great-circle distance"
    assert e.candidates[0].pop == "fra" and e.candidates[0].chosen
    dists = [c.distance_km for c in e.candidates]
    assert all(d is not None for d in dists) and dists == sorted(dists)  # type: ignore[type-var]
    assert 600 < (dists[0] or 0) < 700
    assert e.geoip_network == "81.2.68.0/23"
    assert e.selection.key == s.select("near", A, "81.2.69.0", 24, HealthSnapshot.all_up()).key
    assert e.selection.scope <= 23
    sfo = next(c for c in e.candidates if c.pop == "sfo")
    assert not sfo.eligible and "no address of this family" in " ".join(e.lines())


def test_explain_weighted_and_untailored(tiny_db: GeoDB) -> None:
    s = _selector(tiny_db)
    e = s.explain("canary", A, "2.1.1.77", None, HealthSnapshot.all_up())
    assert e.rule == "weighted hash of 2.1.1.0/24"
    assert {c.weight for c in e.candidates} == {95.0, 5.0}
    assert e.selection.scope == 24
    e = s.explain("solo", A, "2.1.1.77", None, HealthSnapshot.all_up())
    assert e.selection.scope == 0
    assert any("untailored" in n for n in e.notes)


def test_explain_unknown_pool_and_other_qtypes(tiny_db: GeoDB) -> None:
    s = _selector(tiny_db)
    assert s.explain("nope", A, "1.1.1.1", None, HealthSnapshot.all_up()).selection.kind == \
        "servfail"
    e = s.explain("geo", 16, "1.1.1.1", None, HealthSnapshot.all_up())
    assert e.selection.kind == "nodata"
    assert all(len(line.encode()) < 255 for line in e.lines())


def test_lines_fit_in_txt_strings(tiny_db: GeoDB) -> None:
    s = _selector(tiny_db)
    e = s.explain("big", AAAA, "2001:db8:1::1", 48, HealthSnapshot.all_up())
    lines = e.lines()
    assert all(len(line.encode()) < 255 for line in lines)
    e = s.explain("big", A, "2.1.1.1", None, HealthSnapshot.all_up())
    joined = " ".join(e.lines())
    for addr in ("192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.30", "192.0.2.50"):
        assert addr in joined


def test_long_lines_are_truncated_safely() -> None:
    from geodns.select.explain import MAX_LINE_BYTES, _fit, _wrap

    line = "é" * 300
    fitted = _fit(line)
    assert len(fitted.encode()) <= MAX_LINE_BYTES and fitted.endswith("...")
    wrapped = _wrap("   ", tuple(f"2001:db8:{i:x}::1" for i in range(100)))
    assert len(wrapped) > 1 and all(len(w) <= MAX_LINE_BYTES for w in wrapped)
    assert sum(len(w.split()) for w in wrapped) == 100
