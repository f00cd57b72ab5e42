"""The spill controller: shares from loads, damped, per new measurement, and settling
where the load meets the target when the load answers to what is shed."""

from __future__ import annotations

import pytest

from geodns.config import Config, parse_config
from geodns.traffic.loads import LoadSample, LoadSnapshot
from geodns.traffic.spill import SpillController, steady_shares, step_share

CONFIG = """
[loads.edge]
type = "http"
url = "http://127.0.0.1:9/loads"
interval = 5

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
capacity = 1000
load = "edge"

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
capacity = 2000
load = "edge"

[pools.www]
strategy = "failover"
pops = ["fra", "iad"]
ttl = 1
spill = true
spill_at = 0.8
spill_step = 0.1

[pools.api]
strategy = "failover"
pops = ["fra", "iad"]
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "/t/geodns.toml")


def snap(gen: int, t: float, **loads: float | None) -> LoadSnapshot:
    caps = {"fra": 1000.0, "iad": 2000.0}
    return LoadSnapshot(gen, {p: LoadSample(p, v or 0.0, "edge", t, v is None, caps[p])
                              for p, v in loads.items()}, t)


@pytest.mark.parametrize(("share", "load", "target", "step", "expected"), [
    (0.0, 880, 800, 0.1, 0.5 * 80 / 880),  # 10 % over: half that, about 4.5 % more
    (0.0, 2000, 800, 0.1, 0.1),  # far over: capped at the step
    (0.5, 400, 800, 0.1, 0.4),  # far under: back by the step
    (0.05, 780, 800, 0.1, 0.05 - 0.5 * 20 / 800),  # a little under: a little back
    (0.01, 0, 800, 0.1, 0.0),  # never below 0
    (0.95, 5000, 800, 0.1, 1.0),  # never above 1
    (0.0, 0, 0, 0.1, 0.0),
])
def test_step(share: float, load: float, target: float, step: float, expected: float) -> None:
    assert step_share(share, load, target, step) == pytest.approx(expected)


def test_one_step_per_new_measurement_and_only_for_spill_pools(config: Config) -> None:
    c = SpillController(config)
    assert c.observe(snap(1, 100.0, fra=1200, iad=500))
    first = c.shares[("www", "fra")]
    assert first == pytest.approx(0.1)  # 1200 vs 800: half of +33 %, capped at 0.1
    assert ("api", "fra") not in c.shares  # api does not spill
    # the same measurement again (a snapshot republished): nothing moves
    assert not c.observe(snap(2, 100.0, fra=1200, iad=500))
    assert c.shares[("www", "fra")] == first
    # a new measurement: one more step
    assert c.observe(snap(3, 105.0, fra=1200, iad=500))
    assert c.shares[("www", "fra")] == pytest.approx(0.2)
    state = c.state()
    assert state.share("www", "fra") == pytest.approx(0.2)
    assert state.loads["iad"].utilisation == 0.25


def test_publish_reports_only_changes_that_matter(config: Config) -> None:
    c = SpillController(config)
    c.observe(snap(1, 100.0, fra=500, iad=500))
    assert not c.publish()  # nothing shed: answers do not depend on loads
    c.observe(snap(2, 101.0, fra=900, iad=500))
    assert c.publish()  # fra starts shedding
    c.observe(snap(3, 101.0, fra=900, iad=500))
    assert not c.publish()


def test_unknown_load_decays_by_a_step_per_interval(config: Config) -> None:
    now = [1000.0]
    c = SpillController(config, clock=lambda: now[0])
    for i in range(5):
        c.observe(snap(i, 100.0 + i, fra=2000, iad=100))
    assert c.shares[("www", "fra")] == pytest.approx(0.5)
    c.observe(snap(9, 200.0, fra=None, iad=100))  # the feed went stale
    assert not c.tick()  # the first tick starts the clock
    now[0] += 4.9
    assert not c.tick()  # the feed's interval is 5 s
    now[0] += 0.2
    assert c.tick() and c.shares[("www", "fra")] == pytest.approx(0.4)
    for _ in range(10):
        now[0] += 5.0
        c.tick()
    assert c.shares[("www", "fra")] == 0.0


def test_closed_loop_settles_at_the_target_without_oscillating(config: Config) -> None:
    """The load falls as blocks move: demand 1500 on fra (target 800) settles where
    fra carries 800, i.e. sheds 1 - 800/1500; steps never exceed spill_step."""
    c = SpillController(config)
    demand = 1500.0
    shares = []
    for i in range(60):
        load = demand * (1 - c.shares.get(("www", "fra"), 0.0))
        c.observe(snap(i, 100.0 + i, fra=load, iad=100))
        shares.append(c.shares[("www", "fra")])
    steps = [b - a for a, b in zip([0.0, *shares], shares, strict=False)]
    assert max(abs(s) for s in steps) <= 0.1 + 1e-9
    assert shares[-1] == pytest.approx(1 - 800 / 1500, abs=0.01)
    assert steady_shares(config, {"fra": 1500, "iad": 100}).share("www", "fra") == \
        pytest.approx(1 - 800 / 1500)
    # the demand falls back under the target: every block returns
    demand = 600.0
    for i in range(60, 80):
        load = demand * (1 - c.shares[("www", "fra")])
        c.observe(snap(i, 100.0 + i, fra=load, iad=100))
    assert c.shares[("www", "fra")] == 0.0


def test_reload_keeps_shares_of_pools_that_still_spill(config: Config) -> None:
    c = SpillController(config)
    c.observe(snap(1, 1.0, fra=2000, iad=100))
    c.update_config(config)
    assert c.shares[("www", "fra")] == pytest.approx(0.1)
    no_spill = parse_config(CONFIG.replace("spill = true\nspill_at = 0.8\nspill_step = 0.1\n",
                                           ""), "/t/geodns.toml")
    c.update_config(no_spill)
    assert c.shares == {}


def _lagged_loop(ttl: int, lag: int, steps: int = 120) -> list[float]:
    """Demand 1500 on fra, a measurement a second; each sees the share of ``lag``
    seconds before (resolvers still answering from their caches)."""
    config = parse_config(CONFIG.replace("ttl = 1", f"ttl = {ttl}"), "/t/geodns.toml")
    c = SpillController(config)
    history = [0.0] * lag  # the share after each measurement
    for i in range(steps):
        load = 1500.0 * (1 - history[-lag])  # as moved ``lag`` measurements ago
        c.observe(snap(i, 100.0 + i, fra=load, iad=100))
        history.append(c.shares[("www", "fra")])
    return history[-20:]


@pytest.mark.parametrize("lag", [3, 8])
def test_lagging_loads_settle_when_the_ttl_covers_the_lag(lag: int) -> None:
    """A share waits one TTL after it moved (resolvers keep old answers that long, so
    the move shows in the load only then): loads lagging by the TTL settle at the
    target; without the wait the share swings (at 8 s of lag, from 0 to 1)."""
    target = 1 - 800 / 1500
    tail = _lagged_loop(ttl=lag, lag=lag)
    assert max(tail) - min(tail) < 0.01 and abs(tail[-1] - target) < 0.01
    tail = _lagged_loop(ttl=0, lag=lag)
    assert max(tail) - min(tail) > 0.3


def test_receivers_room_is_frozen_while_shedding_but_capacity_is_live() -> None:
    """The split between receivers uses their room from when the pool started
    shedding, so moved blocks do not hop between receivers as their loads change; a
    receiver past capacity takes nothing at once; the room is measured afresh at the
    next episode."""
    config = parse_config(CONFIG.replace('pops = ["fra", "iad"]\nttl = 1',
                                         'pops = ["fra", "iad", "sin"]\nttl = 1')
                          + '[pops.sin]\nlat = 1\nlon = 103\nipv4 = ["192.0.2.30"]\n'
                            'capacity = 1000\nload = "edge"\n', "/t/geodns.toml")

    def loads(t: float, **v: float) -> LoadSnapshot:
        caps = {"fra": 1000.0, "iad": 2000.0, "sin": 1000.0}
        return LoadSnapshot(int(t), {p: LoadSample(p, x, "edge", t, False, caps[p])
                                     for p, x in v.items()}, t)

    c = SpillController(config)
    c.observe(loads(1, fra=1000, iad=600, sin=200))
    c.publish()
    st = c.holder.state
    assert st.receivers("www", ("iad", "sin")) == (("iad", 1000.0), ("sin", 600.0))
    # iad fills up (with what fra sent it): the weights stay as they were
    c.observe(loads(2, fra=1000, iad=1500, sin=300))
    c.publish()
    assert c.holder.state.receivers("www", ("iad", "sin")) == (("iad", 1000.0),
                                                               ("sin", 600.0))
    # past its capacity: no more blocks for iad, whatever its room was
    c.observe(loads(3, fra=1000, iad=2100, sin=300))
    c.publish()
    assert c.holder.state.receivers("www", ("iad", "sin")) == (("sin", 600.0),)
    # fra stops shedding: the next episode measures the room again
    for t in range(4, 30):
        c.observe(loads(t, fra=100, iad=1500, sin=300))
    c.publish()
    assert c.shares[("www", "fra")] == 0
    c.observe(loads(31, fra=1000, iad=1500, sin=300))
    c.publish()
    assert c.holder.state.receivers("www", ("iad", "sin")) == (("iad", 100.0),
                                                               ("sin", 500.0))
