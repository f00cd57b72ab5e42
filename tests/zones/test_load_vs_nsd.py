"""Zone-file errors side by side with NSD's checker: the same broken files through
`geodns check`'s reader and `nsd-checkzone`, every error of a file, on its line.

Run with ``-s`` to see the table. Where NSD and we disagree on a line, the table says
why (NSD reads on into the next line or stops later); a test asserts both columns, so
the table stays what the two programs really say.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from geodns.zones.load import ZoneFileError, parse_records, read_records

NSD_CHECKZONE = shutil.which("nsd-checkzone")
HEAD = """$ORIGIN broken.test.
$TTL 300
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
      IN NS  ns1
ns1   IN A   192.0.2.1
"""  # five good lines: every case's first line is line 6


@dataclass(frozen=True)
class Case:
    name: str
    body: str
    ours: tuple[tuple[int, str], ...]  # (line, start of our message)
    nsd: tuple[int, ...]  # lines nsd-checkzone reports as errors
    why: str = ""  # when the lines differ


CASES = (
    Case("bad-ipv4", "www   IN A   192.0.2.300\n",
         ((6, "bad A record: '192.0.2.300' is not an IPv4 address"),), (6,)),
    Case("ipv4-as-ipv6", "www   IN AAAA 192.0.2.1\n",
         ((6, "bad AAAA record: '192.0.2.1' is not an IPv6 address"),), (6,)),
    Case("unknown-type", "www   IN FOO 1.2.3.4\n",
         ((6, "unknown record type 'FOO'"),), (6,)),
    Case("trailing-junk", "www   IN A   192.0.2.1 IN\n",
         ((6, "unexpected 'IN' after the A record data"),), (6,)),
    Case("empty-label", "alias IN CNAME a..b\n",
         ((6, "empty label (two dots in a row?) near 'a..b'"),), (6,)),
    Case("long-label", "www   IN CNAME " + "a" * 64 + ".example.\n",
         ((6, "a label is longer than 63 bytes"),), (6,)),
    Case("chaos-class", "www   CH A 192.0.2.1\n",
         ((6, "only class IN is served"),), (6,)),
    Case("close-paren", "www   IN A   192.0.2.2 )\n",
         ((6, "unbalanced parentheses: ')' without a matching '('"),), (6,)),
    Case("bad-dollar-ttl", "$TTL forever\nwww   IN A   192.0.2.2\n",
         ((6, "bad TTL 'forever'"),), (6,)),
    Case("missing-include", "$INCLUDE missing.inc\n",
         ((6, "cannot read $INCLUDE file"),), (6,)),
    Case("open-paren", "sub   IN SOA ns1 hostmaster ( 1 2 3 4 5\nwww   IN A   192.0.2.2\n",
         ((7, "unexpected 'www' after the SOA record data (a '(' in it is never closed)"),),
         (7,)),
    Case("three-errors", "a     IN A   192.0.2.300\nb     IN A   192.0.2.2\n"
         "c     IN AAAA ::zz\nd     IN MX  x mail\ne     IN A   192.0.2.5\n",
         ((6, "bad A record: '192.0.2.300' is not an IPv4 address"),
          (8, "bad AAAA record: '::zz' is not an IPv6 address"),
          (9, "bad MX record: 'x' is not a number")), (6, 8, 9)),
    Case("mx-incomplete", "mail  IN MX  10\nwww   IN A   192.0.2.2\n",
         ((6, "the MX record ends too early: expected a preference and a host name"),), (7,),
         "NSD reads on into the next line and reports it; the MX on line 6 is incomplete"),
    Case("open-quote", "txt   IN TXT \"no end\nwww   IN A   192.0.2.2\n",
         ((6, "a quoted string is not closed before the end of the line"),), (8,),
         "NSD lets the quote run to the end of the file and reports EOF (line 8)"),
    Case("soa-multiline", "sub   IN SOA ns1 hostmaster (\n            1 ; serial\n"
         "            x ; refresh\n            3 4 5 )\nwww   IN A   192.0.2.2\n",
         ((8, "bad SOA record near 'x'"),), (9,),
         "the bad refresh 'x' is on line 8; NSD counts the line after its comment"),
    Case("ttl-too-big", "www   99999999999 IN A 192.0.2.1\n",
         ((6, "bad TTL '99999999999'"),), (),
         "NSD accepts a TTL above 2147483647, which RFC 2181 forbids"),
    Case("unknown-directive", "$FOO bar\n",
         ((6, "unknown directive $FOO"),), (7, 6),
         "NSD warns, then reads 'bar' as a record type and fails again on line 7"),
)


def ours(path: Path) -> list[tuple[int, str]]:
    try:
        read_records(str(path), path.read_text())
    except ZoneFileError as exc:
        out = []
        for problem in exc.problems:
            m = re.match(rf"^{re.escape(str(path))}:(\d+): (.*)$", problem)
            assert m, problem
            out.append((int(m.group(1)), m.group(2)))
        return out
    return []


def nsd_lines(path: Path) -> list[int]:
    assert NSD_CHECKZONE is not None
    r = subprocess.run([NSD_CHECKZONE, "broken.test", path.name], cwd=path.parent,
                       capture_output=True, text=True, timeout=30)
    lines = [int(m.group(1)) for m in re.finditer(
        rf"error: {re.escape(path.name)}:(\d+): ", r.stdout + r.stderr)]
    return list(dict.fromkeys(lines))  # NSD often reports one line twice


def write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / f"{case.name}.zone"
    path.write_text(HEAD + case.body)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_our_problems(tmp_path: Path, case: Case) -> None:
    got = ours(write(tmp_path, case))
    assert [line for line, _ in got] == [line for line, _ in case.ours], got
    for (_, message), (_, start) in zip(got, case.ours, strict=True):
        assert message.startswith(start), message
        # our own words: none of the tokenizer's internals
        assert not re.search(r"expected EOL|got \d+ |caught exception|<class|Text input",
                             message), message


@pytest.mark.skipif(NSD_CHECKZONE is None, reason="nsd-checkzone (nsd) not installed")
def test_side_by_side_with_nsd_checkzone(tmp_path: Path) -> None:
    rows = []
    for case in CASES:
        path = write(tmp_path, case)
        got, theirs = ours(path), nsd_lines(path)
        assert theirs == list(case.nsd), (case.name, theirs)
        if set(theirs) != {line for line, _ in got}:
            assert case.why, f"{case.name}: lines differ from NSD's without a reason"
        rows.append((case.name, ", ".join(f"{case.name}.zone:{line}: {msg}"
                                          for line, msg in got),
                     ", ".join(map(str, theirs)) or "(accepted)", case.why))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'file':<{width}}  nsd lines  geodns")
    for name, mine, theirs, why in rows:
        print(f"{name:<{width}}  {theirs:<9}  {mine}" + (f"\n{'':<{width}}  {'':<9}  "
                                                          f"({why})" if why else ""))
    # Every error NSD finds in these files, we find too (same line, or the why says).
    agreed = sum(1 for c in CASES if not c.why)
    assert agreed >= 12


def test_every_error_in_a_file_and_good_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.zone"
    path.write_text(HEAD + "a IN A 192.0.2.300\nb IN A 192.0.2.2\n$INCLUDE nope.inc\n"
                    "c IN TXT \"open\nd IN A 192.0.2.4\n")
    assert [line for line, _ in ours(path)] == [6, 8, 9]
    # Reading went on after each error: b (after a bad line), d (after an unclosed
    # quote) and everything before were read; nothing else was lost.
    _, records, problems = parse_records(str(path), path.read_text())
    assert len(problems) == 3
    names = [(r.name.to_text(), r.line) for r in records]
    assert names[-2:] == [("b.broken.test.", 7), ("d.broken.test.", 10)]
    assert len(records) == 5  # SOA, NS, ns1, b, d


def test_errors_inside_an_included_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "part.inc").write_text("x IN A 192.0.2.1\ny IN A nope\n")
    path = tmp_path / "inc.zone"
    path.write_text(HEAD + "$INCLUDE part.inc\nz IN A 192.0.2.300\n")
    with pytest.raises(ZoneFileError) as info:
        read_records(str(path), path.read_text())
    assert info.value.problems == [
        f"{tmp_path}/part.inc:2: bad A record: 'nope' is not an IPv4 address",
        f"{path}:7: bad A record: '192.0.2.300' is not an IPv4 address",
    ]
