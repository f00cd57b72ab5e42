"""Latency map files: the format, every bad line located, lookups, atomic reloads."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from geodns.traffic.latency_map import (
    LatencyMapError,
    LatencyMapFile,
    Measurement,
    format_latency_map,
    load_latency_map,
    parse_latency_map,
    write_latency_map,
)

GOOD = textwrap.dedent("""\
    # built by hand
    prefix,pop,rtt_ms,samples
    81.2.68.0/22,iad,90.5,41
    81.2.68.0/22,fra,20.5,43

    81.2.69.0/24,iad,15,12
    81.2.69.0/24,fra,25,12
    2001:db8::/47, fra , 24.5 , 20
    2001:db8::/47,iad,95.5,20
    """)


def test_parse_sorts_fastest_first_and_keeps_samples() -> None:
    lmap = parse_latency_map(GOOD, "map.csv")
    assert len(lmap) == 3 and lmap.pops() == {"fra", "iad"}
    net, ms = lmap.lookup("81.2.70.1") or (None, ())
    assert str(net) == "81.2.68.0/22"
    assert ms == (Measurement("fra", 20.5, 43), Measurement("iad", 90.5, 41))


@pytest.mark.parametrize(("ip", "prefix", "best"), [
    ("81.2.69.77", "81.2.69.0/24", "iad"),  # the longer, nested prefix wins
    ("81.2.68.1", "81.2.68.0/22", "fra"),
    ("::ffff:81.2.69.1", "81.2.69.0/24", "iad"),
    ("2001:db8:1:2::3", "2001:db8::/47", "fra"),
    ("2001:db8:2::1", None, None),
    ("192.0.2.1", None, None),
])
def test_lookup_longest_match(ip: str, prefix: str | None, best: str | None) -> None:
    found = parse_latency_map(GOOD, "map.csv").lookup(ip)
    if prefix is None:
        assert found is None
    else:
        assert found is not None and (str(found[0]), found[1][0].pop) == (prefix, best)


def test_header_is_optional() -> None:
    lmap = parse_latency_map("10.0.0.0/8,fra,10,1\n", "m.csv")
    assert [str(n) for n, _ in lmap] == ["10.0.0.0/8"]


@pytest.mark.parametrize(("line", "problem"), [
    ("10.0.0.1/24,fra,10,5", "prefix '10.0.0.1/24' has host bits set (did you mean "
                             "'10.0.0.0/24'?)"),
    ("10.0.0.0/33,fra,10,5", "'10.0.0.0/33' is not a prefix (e.g. 192.0.2.0/24 or "
                             "2001:db8::/48)"),
    ("10.0.0.0/24,fra,10", "expected 4 fields (prefix,pop,rtt_ms,samples), got 3"),
    ("10.0.0.0/24,f r a,10,5", "invalid POP name 'f r a'"),
    ("10.0.0.0/24,zzz,10,5", "unknown POP 'zzz' (POPs: fra, iad)"),
    ("10.0.0.0/24,fra,ten,5", "rtt_ms 'ten' is not a number"),
    ("10.0.0.0/24,fra,nan,5", "rtt_ms 'nan' must be between 0 and 600000"),
    ("10.0.0.0/24,fra,-3,5", "rtt_ms '-3' must be between 0 and 600000"),
    ("10.0.0.0/24,fra,10,0", "samples '0' must be a whole number of at least 1"),
    ("10.0.0.0/24,fra,10,2.5", "samples '2.5' must be a whole number of at least 1"),
    ("10.0.0.0/24,fra,10,5\n10.0.0.0/24,fra,11,6", "duplicate row for 10.0.0.0/24 fra "
                                                   "(first at line 2)"),
])
def test_bad_lines(line: str, problem: str) -> None:
    text = "prefix,pop,rtt_ms,samples\n" + line + "\n"
    with pytest.raises(LatencyMapError) as info:
        parse_latency_map(text, "map.csv", pops={"fra", "iad"})
    lineno = 1 + len(line.splitlines())
    assert info.value.problems == [f"map.csv:{lineno}: {problem}"]


def test_every_problem_is_reported_at_once() -> None:
    text = "10.0.0.0/24,fra,10,5\nbad\n10.0.1.0/24,fra,x,5\n"
    with pytest.raises(LatencyMapError) as info:
        parse_latency_map(text, "m.csv")
    assert [p.split(": ")[0] for p in info.value.problems] == ["m.csv:2", "m.csv:3"]


def test_empty_map_is_a_problem() -> None:
    with pytest.raises(LatencyMapError) as info:
        parse_latency_map("# nothing yet\nprefix,pop,rtt_ms,samples\n", "m.csv")
    assert info.value.problems == ["m.csv:0: no rows (an empty map would send every client "
                                   "to the fallback)"]


def test_format_round_trips(tmp_path: Path) -> None:
    lmap = parse_latency_map(GOOD, "map.csv")
    text = format_latency_map(lmap, ["hand made"])
    assert text.splitlines()[:2] == ["# hand made", "prefix,pop,rtt_ms,samples"]
    path = tmp_path / "m.csv"
    write_latency_map(path, text)
    again = load_latency_map(path)
    assert [(n, ms) for n, ms in again] == [(n, ms) for n, ms in lmap]
    assert again.mtime == path.stat().st_mtime and again.source == str(path)
    assert again.age(path.stat().st_mtime + 30) == 30
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary left behind


def test_load_problems_are_located(tmp_path: Path) -> None:
    with pytest.raises(LatencyMapError) as info:
        load_latency_map(tmp_path / "none.csv")
    assert info.value.problems == [f"{tmp_path / 'none.csv'}:0: no such file"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"10.0.0.0/24,fra,10,5\n10.0.1.0/24,fr\xff,10,5\n")
    with pytest.raises(LatencyMapError) as info:
        load_latency_map(bad)
    assert info.value.problems == [f"{bad}:2: not valid UTF-8"]


def test_map_file_keeps_the_last_good_map(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    watched = LatencyMapFile(path, pops={"fra", "iad"})
    assert not watched.refresh() and watched.current is None
    assert watched.problems[0].startswith(f"{path}:0: cannot read:")

    path.write_text("10.0.0.0/24,fra,10,5\n")
    assert watched.refresh() and watched.current is not None and watched.problems == []
    first = watched.current
    assert not watched.refresh()  # unchanged: not re-read

    path.write_text("10.0.0.0/24,fra,10,5\n10.0.1.0/24,sin,10,5\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert not watched.refresh()
    assert watched.current is first  # a bad file changes nothing...
    assert watched.problems == [f"{path}:2: unknown POP 'sin' (POPs: fra, iad)"]  # ...but says

    path.write_text("10.0.0.0/24,iad,12,5\n")
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    assert watched.refresh() and watched.problems == []
    assert watched.current.lookup("10.0.0.1")[1][0].pop == "iad"  # type: ignore[union-attr,index]

    path.unlink()
    assert not watched.refresh() and watched.current is not None  # gone: last good stays
