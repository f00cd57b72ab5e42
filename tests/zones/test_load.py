"""Zone files: golden parse output, and every validation problem as `file:line: problem`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodns.zones.load import ZoneFileError
from geodns.zones.store import build_store, read_zone_dir

DATA = Path(__file__).resolve().parent.parent / "data"


def canonical(directory: Path) -> str:
    store = build_store(read_zone_dir(str(directory)))
    lines = []
    for zone in store.zones.values():
        for rrset in sorted(zone.all_rrsets(), key=lambda r: (r.name, r.rdtype)):
            lines.append(rrset.to_text())
    return "\n".join(lines) + "\n"


def test_golden_zone_parses_to_known_records() -> None:
    got = canonical(DATA / "golden" / "zones")
    good = DATA / "golden" / "golden.test.good"
    if os.environ.get("UPDATE_GOLDEN"):
        good.write_text(got)
    assert got == good.read_text()


def test_golden_covers_directives() -> None:
    text = (DATA / "golden" / "golden.test.good").read_text()
    assert "included.golden.test. 120 IN A 192.0.2.99" in text  # $INCLUDE, relative path
    assert "host2.golden.test. 3600 IN A 192.0.2.2" in text  # $GENERATE + $TTL 1h
    assert "unk.golden.test. 3600 IN TYPE65400 \\# 3 abcdef" in text  # RFC 3597
    assert "dyn.golden.test. 30 IN DYNA pool-a" in text


def problems(tmp_path: Path, name: str) -> list[str]:
    (tmp_path / name).write_text((DATA / "bad" / name).read_text())
    with pytest.raises(ZoneFileError) as info:
        build_store(read_zone_dir(str(tmp_path)))
    return [p.replace(str(tmp_path) + "/", "") for p in info.value.problems]


def test_every_validation_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, "bad.zone") == [
        "bad.zone:8: alias.bad.test. has CNAME (at bad.zone:7) and other data (A)",
        "bad.zone:9: out.example.org. is outside the zone bad.test.",
        "bad.zone:10: bad TTL 4294967295 for big.bad.test. A (maximum 2147483647)",
        "bad.zone:12: dy.bad.test. has DYNA (at bad.zone:11) and other data (TXT)",
        "bad.zone:13: SOA record for sub.bad.test. is not at the apex bad.test.",
        # ns2 is named on line 5 (the second NS record), not on the RRset's first line
        "bad.zone:5: NS target ns2.bad.test. is inside the zone but has no A or AAAA record",
    ]


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    got = problems(tmp_path, "syntax.zone")
    assert len(got) == 1
    assert got[0].startswith("syntax.zone:5: ")


def test_missing_soa_and_ns(tmp_path: Path) -> None:
    assert problems(tmp_path, "nosoa.zone") == [
        "nosoa.zone:1: zone nosoa.test.: no SOA record at the apex",
        "nosoa.zone:1: zone nosoa.test.: no NS records at the apex",
    ]


def test_origin_from_file_name_without_zone_suffix(tmp_path: Path) -> None:
    (tmp_path / "plain.test.zone").write_text(
        "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n")
    (tmp_path / "other.test").write_text(
        "$TTL 60\n@ SOA ns hm 7 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n")
    (tmp_path / "other.test~").write_text("garbage that would not parse")
    store = build_store(read_zone_dir(str(tmp_path)))
    assert store.serials() == {"plain.test.": 1, "other.test.": 7}


def test_check_command_exit_codes(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "geodns", "check", "--zones"]
    ok = subprocess.run([*run, str(DATA / "golden" / "zones"), "--config",
                         str(DATA / "golden" / "geodns.toml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Without a config no pool exists, so the DYNA record is a problem.
    nopool = subprocess.run([*run, str(DATA / "golden" / "zones"), "--no-config"],
                            capture_output=True, text=True)
    assert nopool.returncode == 1
    assert nopool.stdout.splitlines() == [
        f"{DATA}/golden/zones/golden.test.zone:14: DYNA at dyn.golden.test. names unknown "
        "pool 'pool-a' (pools: none configured)"]
    (tmp_path / "bad.zone").write_text((DATA / "bad" / "bad.zone").read_text())
    bad = subprocess.run([*run, str(tmp_path), "--no-config"], capture_output=True, text=True)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert len(lines) == 6
    assert all(line.startswith(f"{tmp_path}/bad.zone:") for line in lines)


def test_installed_dnspython_is_in_the_range_the_zone_reader_is_tested_with() -> None:
    """geodns.zones.load subclasses private parts of dns.zonefile.Reader: a dnspython
    outside the pinned range may read zones differently without any error."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((DATA.parent.parent / "pyproject.toml").read_text())["project"]
    (spec,) = [Requirement(r).specifier for r in project["dependencies"]
               if Requirement(r).name == "dnspython"]
    assert any(s.operator == "<" for s in spec), f"dnspython{spec} has no upper bound"
    installed = metadata.version("dnspython")
    assert installed in spec, (
        f"dnspython {installed} is installed, but geodns's zone reader is tested with "
        f"dnspython{spec} (pyproject.toml): install a version in that range, or run the "
        "zone tests with this one and widen the range in pyproject.toml")
