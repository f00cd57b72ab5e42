"""``geodns latency-map``: golden input and output, merging, bad input."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from geodns.cli import main as cli_main
from geodns.cli import parse_args
from geodns.traffic.latency_build import (
    BuildOptions,
    build_latency_map,
    rtts_agree,
)
from geodns.traffic.latency_build import run as latency_map
from geodns.traffic.latency_map import load_latency_map, parse_latency_map
from tests.helpers.paths import DATA_DIR

RAW = DATA_DIR / "latency" / "raw.csv"
GOLDEN_MAP = DATA_DIR / "latency" / "map.golden.csv"
GOLDEN_REPORT = DATA_DIR / "latency" / "report.golden.txt"


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = latency_map(parse_args(["latency-map", *args]), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------- golden


def test_golden_map_and_report(tmp_path: Path) -> None:
    target = tmp_path / "map.csv"
    code, out, err = run("--input", str(RAW), "--output", str(target))
    assert (code, err) == (0, "")
    assert target.read_text() == GOLDEN_MAP.read_text()
    lines = out.splitlines()
    assert lines[:-1] == GOLDEN_REPORT.read_text().splitlines()
    assert lines[-1] == f"wrote 6 prefixes (12 rows) to {target}"


def test_golden_map_reads_back_and_answers_clients(tmp_path: Path) -> None:
    lmap = load_latency_map(GOLDEN_MAP, pops={"fra", "iad", "sin"})
    net, ms = lmap.lookup("81.2.69.200") or (None, ())
    assert str(net) == "81.2.68.0/22" and [m.pop for m in ms] == ["fra", "iad"]
    assert ms[0].samples == 43 and ms[0].rtt_ms == 20.5  # the 3000 ms outlier is in, unfelt
    assert lmap.lookup("81.2.72.1")[1][0].pop == "iad"  # type: ignore[index]
    assert lmap.lookup("203.0.113.5") is None  # one POP only: not in the map
    assert str(lmap.lookup("2001:db8:1:ffff::1")[0]) == "2001:db8::/47"  # type: ignore[index]


def test_cli_subcommand_runs_through_geodns_main(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "map.csv"
    assert cli_main(["latency-map", "--input", str(RAW), "--output", str(target)]) == 0
    assert "clients covered: 51 of 61 (83.6%)" in capsys.readouterr().out
    assert target.read_text() == GOLDEN_MAP.read_text()


# ---------------------------------------------------------------------------------- merging


@pytest.mark.parametrize(("a", "b", "agree"), [
    ({"fra": 20, "iad": 90}, {"fra": 24, "iad": 95}, True),  # within 5 ms / 10 %
    ({"fra": 20, "iad": 90}, {"fra": 26, "iad": 90}, False),  # 6 ms > max(5, 2)
    ({"fra": 200, "iad": 300}, {"fra": 219, "iad": 300}, True),  # 19 <= 10 % of 200
    ({"fra": 200, "iad": 300}, {"fra": 221, "iad": 300}, False),
    ({"fra": 20, "iad": 90}, {"fra": 20, "sin": 90}, False),  # different POPs
    ({"fra": 20, "iad": 22}, {"fra": 23, "iad": 21}, False),  # different best POP
    ({"fra": 20, "iad": 20}, {"fra": 20, "iad": 20}, True),  # tie: both pick fra
])
def test_rtts_agree(a: dict[str, float], b: dict[str, float], agree: bool) -> None:
    assert rtts_agree(a, b, 5.0, 10.0) is agree
    assert rtts_agree(b, a, 5.0, 10.0) is agree


def _raw(groups: list[tuple[str, str, float]], n: int = 10) -> str:
    """``n`` identical samples per (client, pop, rtt) row."""
    return "".join(f"{ip},{pop},{rtt}\n" for ip, pop, rtt in groups for _ in range(n))


def _prefixes(text: str, **opts: object) -> list[str]:
    result = build_latency_map(text, "raw.csv", BuildOptions(**opts))  # type: ignore[arg-type]
    assert result.map is not None
    return [str(net) for net, _ in result.map]


QUAD = [(f"10.0.{i}.1", pop, rtt) for i in range(4)
        for pop, rtt in (("fra", 20 + i), ("iad", 90))]


def test_four_agreeing_siblings_become_one_prefix() -> None:
    assert _prefixes(_raw(QUAD)) == ["10.0.0.0/22"]


def test_widest_limits_merging() -> None:
    assert _prefixes(_raw(QUAD), widest_v4=23) == ["10.0.0.0/23", "10.0.2.0/23"]


def test_no_merge_keeps_grouping_prefixes() -> None:
    assert _prefixes(_raw(QUAD), merge=False) == [f"10.0.{i}.0/24" for i in range(4)]


def test_unmeasured_sibling_blocks_merging() -> None:
    rows = [r for r in QUAD if not r[0].startswith("10.0.3.")]
    assert _prefixes(_raw(rows)) == ["10.0.0.0/23", "10.0.2.0/24"]


def test_tolerance_is_configurable() -> None:
    rows = [("10.0.0.1", "fra", 20), ("10.0.0.1", "iad", 90),
            ("10.0.1.1", "fra", 28), ("10.0.1.1", "iad", 90)]
    assert _prefixes(_raw(rows)) == ["10.0.0.0/24", "10.0.1.0/24"]
    assert _prefixes(_raw(rows), tolerance_ms=8.0) == ["10.0.0.0/23"]


def test_merge_that_would_change_the_best_pop_is_refused() -> None:
    # both halves agree (fra best, each rtt within 5 ms), but the sample counts are
    # lopsided: pooled, fra's median is 14 and iad's 11, so the /23 would send both
    # halves to iad, which neither measured as best
    text = (_raw([("10.0.0.1", "fra", 10)], n=10) + _raw([("10.0.0.1", "iad", 11)], n=30)
            + _raw([("10.0.1.1", "fra", 14)], n=30) + _raw([("10.0.1.1", "iad", 15)], n=10))
    result = build_latency_map(text, "raw.csv")
    assert [(str(n), ms[0].pop) for n, ms in result.map or ()] == [
        ("10.0.0.0/24", "fra"), ("10.0.1.0/24", "fra")]


def test_ipv6_grouping_and_ipv4_mapped_clients() -> None:
    rows = [("2001:db8:aa:1::1", "fra", 20), ("2001:db8:aa:2::9", "iad", 80),
            ("::ffff:10.9.9.9", "fra", 30), ("10.9.9.8", "iad", 40)]
    assert _prefixes(_raw(rows)) == ["10.9.9.0/24", "2001:db8:aa::/48"]
    assert _prefixes(_raw(rows), v6_prefix=64, widest_v6=64) == [
        "10.9.9.0/24"]  # each /64 has one POP only


def test_min_samples_and_min_pops() -> None:
    rows = [("10.0.0.1", "fra", 20), ("10.0.0.1", "iad", 90)]
    assert build_latency_map(_raw(rows, n=9), "raw.csv").map is None
    assert _prefixes(_raw(rows, n=9), min_samples=9) == ["10.0.0.0/24"]
    one = [("10.0.0.1", "fra", 20)]
    assert build_latency_map(_raw(one), "raw.csv").map is None
    assert _prefixes(_raw(one), min_pops=1) == ["10.0.0.0/24"]


# -------------------------------------------------------------------------------- bad input

BAD = textwrap.dedent("""\
    client_ip,pop,rtt_ms,time
    10.0.0.1,fra,20
    10.0.0.300,fra,20
    10.0.0.1,fra
    10.0.0.1,fra,fast
    10.0.0.1,fra,-1
    10.0.0.1,,20
    10.0.0.1,fra,20,yesterday
    10.0.0.1,fra,20,2026-01-01T00:00:00
    10.0.0.1,xyz,20
    """) + _raw([("10.0.0.1", "fra", 20), ("10.0.0.1", "iad", 90)])

BAD_PROBLEMS = [
    "{f}:3: '10.0.0.300' is not an IP address",
    "{f}:4: expected 3 or 4 fields (client_ip,pop,rtt_ms[,time]), got 2",
    "{f}:5: rtt_ms 'fast' is not a number",
    "{f}:6: rtt_ms '-1' must be between 0 and 600000",
    "{f}:7: empty POP name",
    "{f}:8: time 'yesterday': Invalid isoformat string: 'yesterday'",
    "{f}:9: time '2026-01-01T00:00:00': time needs a zone (e.g. 2026-01-31T12:00:00Z)",
    "{f}:10: unknown POP 'xyz' (POPs: fra, iad)",
]


def test_bad_lines_write_nothing_by_default(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text(BAD)
    config = tmp_path / "geodns.toml"
    config.write_text('[pops.fra]\nlat = 1\nlon = 1\nipv4 = ["192.0.2.1"]\n'
                      '[pops.iad]\nlat = 2\nlon = 2\nipv4 = ["192.0.2.2"]\n')
    target = tmp_path / "map.csv"
    target.write_text("old map\n")
    code, out, err = run("--input", str(raw), "--output", str(target), "--config", str(config))
    assert code == 1 and out == ""
    assert err.splitlines() == [p.format(f=raw) for p in BAD_PROBLEMS] + [
        "geodns latency-map: 8 bad lines: nothing written (fix them, or --skip-bad)"]
    assert target.read_text() == "old map\n"  # the last good map is untouched

    code, out, err = run("--input", str(raw), "--output", str(target), "--config", str(config),
                         "--skip-bad")
    assert code == 0 and len(err.splitlines()) == 8
    assert out.startswith("read 21 samples from 1 clients in raw.csv (8 bad lines skipped)")
    assert [str(n) for n, _ in load_latency_map(target)] == ["10.0.0.0/24"]


def test_nothing_to_write_and_usage_errors(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("10.0.0.1,fra,20\n")
    target = tmp_path / "map.csv"
    code, _, err = run("--input", str(raw), "--output", str(target))
    assert code == 1 and "no prefix has enough samples: nothing written" in err
    assert not target.exists()
    code, _, err = run("--input", str(raw), "--output", str(target), "--v4-prefix", "33")
    assert code == 2 and "--v4-prefix must be 1..32" in err
    code, _, err = run("--input", str(tmp_path / "none.csv"), "--output", str(target))
    assert code == 1 and err.startswith(f"{tmp_path / 'none.csv'}:0: cannot read:")


def test_output_is_a_valid_map_for_any_input() -> None:
    result = build_latency_map(_raw(QUAD), "raw.csv")
    back = parse_latency_map(result.text, "map.csv")
    assert [(str(n), ms) for n, ms in back] == [(str(n), ms) for n, ms in result.map or ()]
