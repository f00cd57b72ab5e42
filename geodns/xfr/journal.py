"""The primary's journal: the differences between successive versions of a zone.

IXFR (RFC 1995) is answered from it.  Per zone the state directory holds the last
version seen (``NAME.zone``, so a restart can diff the zone files against it) and the
differences (``NAME.journal``, JSON lines, oldest first), both written atomically.
The journal is bounded in bytes per zone: the oldest differences are dropped, and a
secondary that needs one of them gets the whole zone instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name

from geodns.xfr.files import file_stem, write_atomic
from geodns.xfr.zonedata import is_soa, master_text, newer, parse_line, rr_lines, zone_rrsets
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.xfr")


@dataclass(frozen=True, slots=True)
class Diff:
    """Version ``old`` -> ``new``: RRs deleted and added (the SOAs included)."""

    old: int
    new: int
    deleted: tuple[str, ...]
    added: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"from": self.old, "to": self.new, "del": list(self.deleted),
                           "add": list(self.added)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Diff:
        d = json.loads(text)
        return cls(int(d["from"]), int(d["to"]), tuple(d["del"]), tuple(d["add"]))


def trim(diffs: list[Diff], max_bytes: int) -> list[Diff]:
    """The newest differences whose JSON lines fit in ``max_bytes``."""
    kept: list[Diff] = []
    total = 0
    for diff in reversed(diffs):
        total += len(diff.to_json()) + 1
        if total > max_bytes:
            break
        kept.append(diff)
    return kept[::-1]


class Journal:
    """One zone's journal; ``diffs`` is replaced whole, so readers need no lock."""

    def __init__(self, directory: Path, origin: dns.name.Name, max_bytes: int) -> None:
        self.origin = origin
        self.max_bytes = max_bytes
        stem = file_stem(origin)
        self.snapshot_path = directory / f"{stem}.zone"
        self.path = directory / f"{stem}.journal"
        self.serial: int | None = None
        self.lines: set[str] | None = None
        self.diffs: tuple[Diff, ...] = ()

    def load(self) -> None:
        """The last version and differences from disk; anything unreadable is dropped
        (the next IXFR is answered with the whole zone)."""
        try:
            text = self.snapshot_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("journal %s: cannot read %s: %s", self.origin, self.snapshot_path, exc)
            return
        try:
            lines = {line for line in text.splitlines() if line and not line.startswith("$")}
            soa = [parse_line(line) for line in lines if is_soa(line)]
            serial = soa[0][0].serial
        except (dns.exception.DNSException, ValueError, IndexError) as exc:
            log.warning("journal %s: %s is unreadable (%s); starting afresh", self.origin,
                        self.snapshot_path, exc)
            return
        self.lines, self.serial = lines, serial
        try:
            diffs = [Diff.from_json(line) for line in
                     self.path.read_text(encoding="utf-8").splitlines() if line]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("journal %s: %s is unreadable (%s); IXFR falls back to AXFR "
                        "until the next change", self.origin, self.path, exc)
            return
        if diffs and diffs[-1].new != serial:
            log.warning("journal %s: ends at serial %d but the last version is %d; dropped",
                        self.origin, diffs[-1].new, serial)
            return
        self.diffs = tuple(diffs)

    def record(self, zone: Zone) -> bool:
        """Journal ``zone`` if its serial changed; True when it did (send NOTIFY)."""
        serial = zone.serial
        if serial == self.serial:
            return False
        lines = rr_lines(zone_rrsets(zone))
        diffs = list(self.diffs)
        if self.lines is not None and self.serial is not None and newer(serial, self.serial):
            diffs.append(Diff(self.serial, serial, tuple(sorted(self.lines - lines)),
                              tuple(sorted(lines - self.lines))))
        else:
            if self.serial is not None:
                log.warning("zone %s: serial went from %d to %d (not newer): journal "
                            "cleared, secondaries that hold %d keep it", self.origin,
                            self.serial, serial, self.serial)
            diffs = []
        diffs = trim(diffs, self.max_bytes)
        try:
            write_atomic(self.snapshot_path, master_text(self.origin, lines))
            write_atomic(self.path, "".join(d.to_json() + "\n" for d in diffs))
        except OSError as exc:
            log.error("journal %s: cannot write %s: %s (IXFR answered from memory until "
                      "restart)", self.origin, self.path.parent, exc)
        self.lines, self.serial, self.diffs = lines, serial, tuple(diffs)
        return True

    def chain(self, since: int, current: int) -> list[Diff] | None:
        """The differences from serial ``since`` up to ``current``, or None."""
        diffs = self.diffs
        for i, diff in enumerate(diffs):
            if diff.old == since:
                run = list(diffs[i:])
                return run if run[-1].new == current else None
        return None

