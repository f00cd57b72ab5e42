"""Metrics: plain counters on the hot path, valid Prometheus families at scrape time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from geodns.ops.metrics import NO_POP, AnswerHistory, Metrics, qtype_label, rcode_label


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus-client's own parser."""
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass
class Sel:
    pops: tuple[str, ...]
    kind: str = "addresses"
    arm: str | None = None
    fence: str | None = None


def test_queries_fold_numbers_and_names() -> None:
    m = Metrics()
    m.query("udp", 1, 0)
    m.query("udp", "A", "NOERROR")
    m.query("tcp", 28, 3)
    m.query("udp", 4242, 0)  # unusual type: folded into "other"
    s = samples(m)
    assert s[("geodns_queries_total", (("qtype", "A"), ("rcode", "NOERROR"),
                                        ("transport", "udp")))] == 2
    assert s[("geodns_queries_total", (("qtype", "AAAA"), ("rcode", "NXDOMAIN"),
                                        ("transport", "tcp")))] == 1
    assert s[("geodns_queries_total", (("qtype", "other"), ("rcode", "NOERROR"),
                                        ("transport", "udp")))] == 1


def test_answers_by_pool_and_pop() -> None:
    m = Metrics()
    m.answer("www", "fra")
    m.on_answer("www", Sel(("fra",)))
    m.on_answer("api", Sel(("iad", "fra")))
    m.on_answer("api", Sel(()))
    s = samples(m)
    assert s[("geodns_answers_total", (("arm", ""), ("pool", "www"), ("pop", "fra")))] == 2
    assert s[("geodns_answers_total", (("arm", ""), ("pool", "api"), ("pop", "iad")))] == 1
    assert s[("geodns_answers_total", (("arm", ""), ("pool", "api"), ("pop", "fra")))] == 1
    assert s[("geodns_answers_total", (("arm", ""), ("pool", "api"), ("pop", NO_POP)))] == 1
    assert m.answers_by_pop() == {"fra": 3, "iad": 1}


def test_answers_by_arm_and_fence() -> None:
    """Every answer is counted under its experiment arm; answers to fenced clients once
    more per fence, NODATA/SERVFAIL (no allowed POP) apart from answered ones."""
    m = Metrics()
    m.on_answer("www", Sel(("fra",), arm="control"))
    m.on_answer("www", Sel(("fra",), arm="control"))
    m.on_answer("www", Sel(("sjc",), arm="new-edge", fence="us-only"))
    m.on_answer("www", Sel((), kind="servfail", fence="us-only"))
    m.on_answer("api", Sel((), kind="nodata", fence="de+eu"))
    s = samples(m)
    assert s[("geodns_answers_total", (("arm", "control"), ("pool", "www"), ("pop", "fra")))] \
        == 2
    assert s[("geodns_answers_total", (("arm", "new-edge"), ("pool", "www"), ("pop", "sjc")))] \
        == 1
    assert s[("geodns_answers_total", (("arm", ""), ("pool", "www"), ("pop", NO_POP)))] == 1
    fenced = {k[1]: v for k, v in s.items() if k[0] == "geodns_fenced_answers_total"}
    assert fenced == {
        (("fence", "us-only"), ("pool", "www"), ("result", "answered")): 1,
        (("fence", "us-only"), ("pool", "www"), ("result", "servfail")): 1,
        (("fence", "de+eu"), ("pool", "api"), ("result", "nodata")): 1}
    assert m.answers_by_pop() == {"fra": 2, "sjc": 1}


def test_health_reload_zone_cache_querylog() -> None:
    m = Metrics()
    m.set_health("fra", "drain", 0.012)
    m.set_health("iad", "up", 0.003)
    m.set_health("fra/192.0.2.21", "down")
    m.health_changed("fra", "drain")
    m.reloaded(True, {"example.com.": 2026112101})
    m.reloaded(False)
    hits = misses = 0
    m.cache_source = lambda: (hits, misses)
    hits, misses = 7, 3
    m.cache_retired(100, 10)  # a previous State's counts are kept across a reload
    m.querylog_dropped += 4
    s = samples(m)
    assert s[("geodns_health_up", (("target", "fra"),))] == 0
    assert s[("geodns_health_up", (("target", "iad"),))] == 1
    assert s[("geodns_health_up", (("target", "fra/192.0.2.21"),))] == 0
    assert s[("geodns_health_state", (("state", "drain"), ("target", "fra")))] == 1
    assert s[("geodns_health_state", (("state", "up"), ("target", "fra")))] == 0
    assert s[("geodns_health_check_latency_seconds", (("target", "fra"),))] == 0.012
    assert ("geodns_health_check_latency_seconds", (("target", "fra/192.0.2.21"),)) not in s
    assert s[("geodns_health_state_changes_total", (("state", "drain"), ("target", "fra")))] == 1
    assert s[("geodns_reloads_total", (("result", "success"),))] == 1
    assert s[("geodns_reloads_total", (("result", "failure"),))] == 1
    assert s[("geodns_last_reload_success", ())] == 0
    assert abs(s[("geodns_last_reload_timestamp_seconds", ())] - time.time()) < 60
    assert s[("geodns_zone_serial", (("zone", "example.com."),))] == 2026112101
    assert s[("geodns_answer_cache_hits_total", ())] == 107
    assert s[("geodns_answer_cache_misses_total", ())] == 13
    assert s[("geodns_querylog_dropped_total", ())] == 4

    m.replace_health({"iad": "up"})  # config reload dropped fra
    s = samples(m)
    assert ("geodns_health_up", (("target", "fra"),)) not in s
    assert ("geodns_health_check_latency_seconds", (("target", "fra"),)) not in s


def test_registries_are_private() -> None:
    """Many Metrics in one process (tests, reloads) never collide or leak into each other."""
    a, b = Metrics(), Metrics()
    a.query("udp", 1, 0)
    assert b"geodns_queries_total{" in a.render()
    assert b"geodns_queries_total{" not in b.render()
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("geodns_queries_total") is None


def test_naming_conventions() -> None:
    m = Metrics()
    m.query("udp", 1, 0)
    m.set_health("fra", "up", 0.1)
    m.reloaded(True, {"a.": 1})
    for fam in text_string_to_metric_families(m.render().decode()):
        # process_* and python_info are the standard names of prometheus-client's
        # ProcessCollector and PlatformCollector (what every dashboard expects).
        assert fam.name.startswith(("geodns_", "process_", "python_"))
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples)
        assert "_ms" not in fam.name and "milli" not in fam.name
        assert fam.documentation


def series(m: Metrics, name: str) -> set[tuple[tuple[str, str], ...]]:
    return {labels for n, labels in samples(m) if n == name}


def test_health_series_never_churn_when_state_changes() -> None:
    """The state is a value, not a label: a flap changes values, never the series set."""
    m = Metrics()
    m.set_health("fra", "up")
    before = series(m, "geodns_health_up") | series(m, "geodns_health_state")
    for state in ("down", "drain", "up"):
        m.health_changed("fra", state)
        s = samples(m)
        assert series(m, "geodns_health_up") | series(m, "geodns_health_state") == before
        assert s[("geodns_health_up", (("target", "fra"),))] == (1 if state == "up" else 0)
        assert s[("geodns_health_state", (("state", state), ("target", "fra")))] == 1
        assert sum(v for (n, lab), v in s.items() if n == "geodns_health_state") == 1


def test_latency_histogram_build_info_process_and_geoip() -> None:
    m = Metrics(version="1.2.3")
    for seconds in (0.000004, 0.00002, 0.00002, 0.003, 5.0):
        m.latency(seconds)
    m.geoip = ("GeoLite2-City", "/db.mmdb", 1530653216.0)
    s = samples(m)
    name = "geodns_query_duration_seconds"
    assert s[(f"{name}_bucket", (("le", "5e-06"),))] == 1
    assert s[(f"{name}_bucket", (("le", "2.5e-05"),))] == 3
    assert s[(f"{name}_bucket", (("le", "0.005"),))] == 4
    assert s[(f"{name}_bucket", (("le", "+Inf"),))] == 5
    assert s[(f"{name}_count", ())] == 5
    assert abs(s[(f"{name}_sum", ())] - 5.003044) < 1e-9
    import platform

    assert s[("geodns_build_info", (("python", platform.python_version()),
                                    ("version", "1.2.3")))] == 1
    assert s[("process_resident_memory_bytes", ())] > 0
    assert ("python_info", ()) not in s  # it has labels
    assert any(n == "python_info" for n, _ in s)
    assert s[("geodns_geoip_build_timestamp_seconds", (("path", "/db.mmdb"),
                                                      ("type", "GeoLite2-City")))] == \
        1530653216.0


def test_labels() -> None:
    assert qtype_label(1) == "A" and qtype_label("aaaa") == "AAAA"
    assert qtype_label(65000) == "other"
    assert rcode_label(0) == "NOERROR" and rcode_label(2) == "SERVFAIL"


def test_hot_path_is_cheap() -> None:
    """Generous bound (shared CI machines): well under 2 us per query + answer."""
    m = Metrics()
    sel = Sel(("fra",))
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        m.query("udp", 1, 0)
        m.on_answer("www", sel)
    per = (time.perf_counter() - start) / n
    assert per < 2e-6, f"{per * 1e9:.0f} ns per query"
    assert m.queries[("udp", 1, 0)] == n


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_answer_history_ring_buffer() -> None:
    clock = Clock(600 * 60.0 + 5)
    h = AnswerHistory(minutes=3, clock=clock)  # counters are zero at minute 600
    h.tick({"fra": 5})
    assert h.window({"fra": 5, "iad": 2}, 5) == {"fra": 5, "iad": 2}
    clock.t += 60  # minute 601: minute 600 closes with fra 5, iad 2
    h.tick({"fra": 5, "iad": 2})
    clock.t += 30
    assert h.window({"fra": 8, "iad": 2}, 1) == {"fra": 3}  # current minute only
    assert h.window({"fra": 8, "iad": 2}, 2) == {"fra": 8, "iad": 2}
    clock.t += 5 * 60  # minute 606: 601 closes (fra 5), 602-605 idle; ring keeps 3
    per = h.per_minute({"fra": 10, "iad": 2})
    assert [t // 60 for t, _ in per] == [603, 604, 605, 606]  # 3 closed + current
    assert all(c == {} for _, c in per)
    assert h.window({"fra": 10, "iad": 2}, 15) == {}
    h.tick({"fra": 11, "iad": 2})
    assert h.window({"fra": 11, "iad": 2}, 1) == {"fra": 1}


def test_metrics_recent_answers() -> None:
    clock = Clock(1000 * 60.0)
    m = Metrics(clock=clock)
    for _ in range(6):
        m.answer("www", "iad")
    m.answer("www", "fra")
    m.on_answer("www", Sel(()))  # NO_POP never counts as a POP
    assert m.recent_answers(5) == {"iad": 6, "fra": 1}
    clock.t += 120
    m.tick()
    m.answer("www", "fra")
    assert m.recent_answers(1) == {"fra": 1}
    assert m.recent_answers(5) == {"iad": 6, "fra": 2}
