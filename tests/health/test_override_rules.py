"""The override language (geodns.health.override_rules): file lines, one rule from the
API or the command line, resolving rules against POPs."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodns.config import Config
from geodns.health.override_rules import (
    OverrideError,
    OverrideRule,
    check_matches,
    format_time,
    make_rule,
    next_expiry,
    parse_overrides,
    parse_request,
    resolve,
)
from geodns.ops.simulate import scenario_rules
from geodns.ops.status import to_json
from geodns.ops.status_build import rule_status
from tests.health.backends import config_from
from tests.health.overrides_data import BASE, CONFIG, DEC1


@pytest.fixture(scope="module")
def config() -> Config:
    return config_from(CONFIG)


# --------------------------------------------------------------------------- parsing

GOOD = [
    ("fra down", ("fra", "down", None)),
    ("fra/* drain", ("fra/*", "drain", None)),
    ("sin up until 2026-12-01T10:00:00Z", ("sin", "up", DEC1)),
    ("sin up until 2026-12-01T11:00:00+01:00", ("sin", "up", DEC1)),
    ("*/192.0.2.20 down until +30m", ("*/192.0.2.20", "down", BASE + 1800)),
    ("fra down until +1h30m", ("fra", "down", BASE + 5400)),
    ("fra down until +2d", ("fra", "down", BASE + 2 * 86400)),
    ("fra down until +90s", ("fra", "down", BASE + 90)),
    ("  fra   DOWN   # drill, ticket 42", ("fra", "down", None)),
    ("fra/2001:DB8:0::20 down", ("fra/2001:db8::20", "down", None)),
    ("[fs]*/192.0.2.* drain", ("[fs]*/192.0.2.*", "drain", None)),
    ("s?n down UNTIL 2026-12-01T10:00:00Z", ("s?n", "down", DEC1)),
]


@pytest.mark.parametrize(("line", "want"), GOOD, ids=[g[0] for g in GOOD])
def test_good_lines(line: str, want: tuple[str, str, float | None]) -> None:
    rules, _ = parse_overrides(f"# header\n\n{line}\n", "admin.state", base_time=BASE)
    assert [(r.pattern, r.state, r.until) for r in rules] == [want]
    assert rules[0].source == "admin.state:3"


BAD = [
    ("fra", 'missing the state: expected "PATTERN STATE [until TIME] [force]"'),
    ("fra dwn", "unknown state 'dwn' (expected up, down or drain)"),
    ("fra down til +30m", "expected 'until TIME' after the state, got 'til'"),
    ("fra down until", "missing the time after 'until' (e.g. 2026-12-01T10:00:00Z or +30m)"),
    ("fra down until +30m now", "unexpected text after the time: 'now'"),
    ("fra down until tomorrow", "bad time 'tomorrow' (e.g. 2026-12-01T10:00:00Z or +30m)"),
    ("fra down until 2026-12-01T10:00:00",
     "time '2026-12-01T10:00:00' has no timezone (add Z or +HH:MM)"),
    ("fra down until +30x", "bad relative time '+30x' (e.g. +90s, +30m, +1h30m, +2d)"),
    ("fra down until +", "bad relative time '+' (e.g. +90s, +30m, +1h30m, +2d)"),
    ("fra down until +0m", "relative time '+0m' must be positive"),
    ("fra/1.2.3 down", "bad pattern 'fra/1.2.3': '1.2.3' is not an IP address"),
    ("/192.0.2.1 down", "bad pattern '/192.0.2.1': empty POP part (use */ADDRESS for any POP)"),
    ("fra/ down", "bad pattern 'fra/': empty address part (use fra/* for every address)"),
    ("a/b/c down", "bad pattern 'a/b/c': at most one '/' (POP/ADDRESS)"),
    ("fr@ down", "bad pattern 'fr@': POP part may only hold letters, digits, '_', '-', '.' "
                 "and glob characters * ? [ ]"),
    ("fra/192.0.2.x* down", "bad pattern 'fra/192.0.2.x*': address glob may only hold hex "
                            "digits, '.', ':' and glob characters * ? [ ]"),
    ("fra down until +367d", "until '+367d' is more than 366 days ahead (leave until out for "
                             "an override that stays until removed)"),
    ("fra down until 9999-12-31T23:59:59Z", "until '9999-12-31T23:59:59Z' is more than 366 "
     "days ahead (leave until out for an override that stays until removed)"),
    ("fra down until +9999999999w", "bad relative time '+9999999999w' (e.g. +90s, +30m, "
                                    "+1h30m, +2d)"),
    ("f" + "*" * 128 + " down", "pattern 'f" + "*" * 39 + "'... is 129 characters long "
                                "(at most 128)"),
]


@pytest.mark.parametrize(("line", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_lines(line: str, problem: str) -> None:
    with pytest.raises(OverrideError) as err:
        parse_overrides(f"fra up\n{line}\n", "/etc/geodns/admin.state", base_time=BASE)
    assert err.value.problems == [f"/etc/geodns/admin.state:2: {problem}"]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = "fra down\nsin dwn\n# ok\nsyd down until soon\nfra/* drain\n"
    with pytest.raises(OverrideError) as err:
        parse_overrides(text, "a.state", base_time=BASE)
    assert err.value.problems == [
        "a.state:2: unknown state 'dwn' (expected up, down or drain)",
        "a.state:4: bad time 'soon' (e.g. 2026-12-01T10:00:00Z or +30m)",
    ]


def test_relative_times_count_from_when_the_line_first_appeared() -> None:
    text = "fra down until +30m\n"
    rules, anchors = parse_overrides(text, "a", base_time=BASE)
    assert rules[0].until == BASE + 1800
    # another line added an hour later: the old line keeps its anchor, the new one is fresh
    later = BASE + 3600
    rules2, anchors2 = parse_overrides(text + "sin down until +30m  # new\n", "a",
                                       base_time=later, anchors=anchors)
    assert [r.until for r in rules2] == [BASE + 1800, later + 1800]
    # editing the line itself restarts its clock
    rules3, _ = parse_overrides("fra down until +45m\n", "a", base_time=later, anchors=anchors2)
    assert rules3[0].until == later + 2700


# --------------------------------------------------------------------------- resolution


def rules_of(text: str) -> list[OverrideRule]:
    return parse_overrides(text, "t", base_time=BASE)[0]


def test_resolve_keys_globs_and_later_lines_win(config: Config) -> None:
    rules = rules_of("""
        * drain
        fra down
        sin up
        fra/* drain
        */192.0.2.21 up
        */192.0.2.5? down
        nope down
    """)
    assert resolve(rules, config.pops, BASE) == {
        "fra": "down", "sin": "up", "syd": "drain",
        ("fra", "192.0.2.20"): "drain", ("fra", "192.0.2.21"): "up",
        ("fra", "2001:db8::20"): "drain",
        ("syd", "192.0.2.50"): "down",
    }


def test_expired_rules_do_not_apply(config: Config) -> None:
    rules = rules_of("fra down until +10s\nsin drain until 2020-01-01T00:00:00Z\nsyd down\n")
    assert resolve(rules, config.pops, BASE + 5) == {"fra": "down", "syd": "down"}
    assert resolve(rules, config.pops, BASE + 10) == {"syd": "down"}
    assert next_expiry(rules, BASE + 5) == BASE + 10
    assert next_expiry(rules, BASE + 10) is None



def test_format_time() -> None:
    assert format_time(DEC1) == "2026-12-01T10:00:00Z"


def test_shipped_example_file_parses(config: Config) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "demo" / "admin.state.example"
    written = DEC1 - 7200  # two hours before the absolute expiry in the file
    rules, _ = parse_overrides(example.read_text(), str(example), base_time=written)
    assert [(r.pattern, r.state) for r in rules] == [
        ("fra/*", "drain"), ("sin", "up"), ("*/192.0.2.50", "down")]
    assert resolve(rules, config.pops, written + 60) == {
        ("fra", "192.0.2.20"): "drain", ("fra", "192.0.2.21"): "drain",
        ("fra", "2001:db8::20"): "drain", "sin": "up", ("syd", "192.0.2.50"): "down"}


def test_force_is_a_line_suffix() -> None:
    rules, _ = parse_overrides("fra drain force\nsin down until +30m FORCE\nsyd up\n", "a",
                               base_time=1000.0)
    assert [(r.pattern, r.state, r.until, r.force) for r in rules] == [
        ("fra", "drain", None, True), ("sin", "down", 2800.0, True), ("syd", "up", None, False)]
    assert rules[0].describe() == "fra drain force"
    assert to_json(rule_status(rules[1], 0))["force"] is True  # as /status shows it


# --------------------------------------------------------------------------- one language

BAD_TARGETS = ["fra/x", "fra/", "/192.0.2.20", "f@a", "fra/1/2", "x" * 200]


@pytest.mark.parametrize("target", BAD_TARGETS, ids=range(len(BAD_TARGETS)))
def test_a_bad_target_gets_the_same_words_from_file_api_and_command_line(
        target: str, config: Config) -> None:
    with pytest.raises(OverrideError) as from_file:
        parse_overrides(f"{target} down\n", "admin.state", base_time=BASE)
    with pytest.raises(OverrideError) as from_api:
        parse_request({"target": target, "state": "down"}, BASE)
    with pytest.raises(OverrideError) as from_cli:  # simulate --down, explain --down
        scenario_rules(config, down=[target], now=BASE)
    problem = str(from_api.value)
    assert from_file.value.problems == [f"admin.state:1: {problem}"]
    assert str(from_cli.value) == problem


def test_a_good_target_is_the_same_rule_from_file_api_and_command_line(
        config: Config) -> None:
    (line,), _ = parse_overrides("fra/2001:DB8:0::20 DRAIN until +30m\n", "a",
                                 base_time=BASE)
    api = parse_request({"target": "fra/2001:DB8:0::20", "state": "DRAIN",
                         "until": "+30m"}, BASE)
    rule = make_rule("fra/2001:DB8:0::20", "DRAIN", "+30m", now=BASE)
    (cli,) = scenario_rules(config, drain=["fra/2001:DB8:0::20"], now=BASE)
    assert line.ident == api.ident == rule.ident == ("fra/2001:db8::20", "drain",
                                                      BASE + 1800, False)
    assert cli.ident == ("fra/2001:db8::20", "drain", None, False)
    assert resolve([line], config.pops, BASE) == resolve([cli], config.pops, BASE) == {
        ("fra", "2001:db8::20"): "drain"}


def test_targets_that_match_nothing_are_refused(config: Config) -> None:
    with pytest.raises(OverrideError, match=r"target 'frq' matches no POP or address "
                       r"\(POPs: fra, sin, syd\)"):
        check_matches(make_rule("frq", "down", now=BASE), config.pops)
    with pytest.raises(OverrideError, match=r"'fra/192\.0\.2\.99' matches no POP"):
        scenario_rules(config, down=["fra/192.0.2.99"], now=BASE)
