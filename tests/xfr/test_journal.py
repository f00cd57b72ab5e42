"""The primary's journal: differences between versions, bounded, kept on disk."""

from __future__ import annotations

from pathlib import Path

import dns.name

from geodns.xfr.journal import Diff, Journal, trim
from tests.xfr.zones import ORIGIN, one

NAME = dns.name.from_text(ORIGIN)


def test_first_version_is_a_snapshot_then_each_new_serial_a_difference(tmp_path: Path) -> None:
    j = Journal(tmp_path, NAME, 1 << 20)
    assert j.record(one(1)) is True  # new: NOTIFY
    assert j.diffs == ()
    assert j.record(one(1)) is False  # same serial: nothing to say
    assert j.record(one(2, "www IN A 192.0.2.11\nnew IN TXT \"x\"\n")) is True
    (diff,) = j.diffs
    assert (diff.old, diff.new) == (1, 2)
    assert set(diff.deleted) == {"unit.test. 60 IN SOA ns1.unit.test. hm.unit.test. 1 3600 "
                                 "600 600 300", "www.unit.test. 60 IN A 192.0.2.10"}
    assert set(diff.added) == {"unit.test. 60 IN SOA ns1.unit.test. hm.unit.test. 2 3600 "
                               "600 600 300", "www.unit.test. 60 IN A 192.0.2.11",
                               'new.unit.test. 60 IN TXT "x"'}
    j.record(one(3, "www 120 IN A 192.0.2.11\nnew IN TXT \"x\"\n"))  # a TTL change
    assert [(d.old, d.new) for d in j.chain(1, 3) or []] == [(1, 2), (2, 3)]
    assert [(d.old, d.new) for d in j.chain(2, 3) or []] == [(2, 3)]
    assert j.chain(7, 3) is None  # a serial we never had
    assert j.chain(1, 4) is None  # does not reach the served serial


def test_kept_across_restarts_and_a_change_made_while_down_is_journaled(
        tmp_path: Path) -> None:
    j = Journal(tmp_path, NAME, 1 << 20)
    j.record(one(1))
    j.record(one(2, "www IN A 192.0.2.11\n"))
    again = Journal(tmp_path, NAME, 1 << 20)
    again.load()
    assert again.serial == 2 and again.diffs == j.diffs
    # the zone file changed while the server was down: the difference is still found
    assert again.record(one(3, "www IN A 192.0.2.12\n")) is True
    assert [(d.old, d.new) for d in again.chain(1, 3) or []] == [(1, 2), (2, 3)]
    assert (tmp_path / "unit.test.journal").read_text().count("\n") == 2


def test_bounded_in_bytes_oldest_dropped(tmp_path: Path) -> None:
    j = Journal(tmp_path, NAME, 700)
    for serial in range(1, 8):
        j.record(one(serial, f"www IN A 192.0.2.{serial}\n"))
    assert 0 < len(j.diffs) < 6
    assert j.diffs[-1].new == 7
    assert sum(len(d.to_json()) + 1 for d in j.diffs) <= 700
    assert j.chain(1, 7) is None  # dropped: that client gets the whole zone
    assert j.chain(j.diffs[0].old, 7) is not None


def test_serial_going_backwards_clears_the_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path, NAME, 1 << 20)
    j.record(one(5))
    j.record(one(6, "www IN A 192.0.2.11\n"))
    assert j.record(one(4)) is True
    assert j.diffs == ()


def test_unreadable_files_start_afresh(tmp_path: Path) -> None:
    (tmp_path / "unit.test.zone").write_text("$ORIGIN unit.test.\nnot a record\n")
    j = Journal(tmp_path, NAME, 1 << 20)
    j.load()
    assert j.serial is None
    j.record(one(1))
    j.record(one(2, "www IN A 192.0.2.11\n"))
    (tmp_path / "unit.test.journal").write_text("{broken\n")
    k = Journal(tmp_path, NAME, 1 << 20)
    k.load()
    assert k.serial == 2 and k.diffs == ()


def test_trim_keeps_the_newest() -> None:
    diffs = [Diff(i, i + 1, ("a" * 50,), ("b" * 50,)) for i in range(5)]
    size = len(diffs[0].to_json()) + 1
    assert trim(diffs, size * 2) == diffs[-2:]
    assert trim(diffs, size - 1) == []
