"""Read RFC 1035 master files with dnspython, keeping file:line for every record.

dnspython's zone reader silently drops records outside the zone and resolves
CNAME-and-other-data conflicts by discarding data; an operator must hear about
both, so we feed its Reader a recording transaction and validate ourselves.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile

from geodns.problems import Problems
from geodns.zones import dyna

dyna.register()

IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".bak", ".tmp", ".orig", ".rej", ".inc", ".include")


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as written in a file."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata
    file: str
    line: int


class ZoneFileError(Problems):
    """A zone file that cannot be served."""


def is_zone_file(name: str) -> bool:
    """Zone files are the directory's plain files, minus hidden, backup and include files."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES) \
        and not name.startswith("#")


_ORIGIN_RE = re.compile(r"^\$ORIGIN\s+(\S+)", re.IGNORECASE)


def origin_for(path: str, text: str) -> dns.name.Name:
    """The file's leading $ORIGIN, else its name without a trailing `.zone`."""
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        m = _ORIGIN_RE.match(line)
        if m:
            return dns.name.from_text(m.group(1), dns.name.root)
        if line.upper().startswith("$TTL"):
            continue
        break
    base = os.path.basename(path)
    if base.endswith(".zone"):
        base = base[: -len(".zone")]
    return dns.name.from_text(base, dns.name.root)


class _Manager:
    """Just enough of dnspython's TransactionManager for its zone Reader."""

    def __init__(self, origin: dns.name.Name) -> None:
        self.origin = origin

    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        # Claim the root as the zone origin so the Reader hands us every record,
        # including those outside the zone, which we then report.
        return (dns.name.root, False, dns.name.root)

    def get_class(self) -> dns.rdataclass.RdataClass:
        return dns.rdataclass.IN


class _RecordingTxn:
    """Collects records with their location instead of building a dnspython zone."""

    def __init__(self, origin: dns.name.Name) -> None:
        self.manager = _Manager(origin)
        self.records: list[Record] = []
        self.reader: _Reader | None = None

    def check_put_rdataset(self, check: Any) -> None:
        pass  # we validate CNAME-and-other-data ourselves, with line numbers

    def _set_origin(self, origin: dns.name.Name) -> None:
        pass

    def add_unicode(self, value: str) -> None:
        pass

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        assert self.reader is not None
        file, line = self.reader.record_start
        self.records.append(Record(name, ttl, rdata, file, line))


class _Reader(dns.zonefile.Reader):
    """dnspython's Reader, remembering where each record line starts."""

    record_start: tuple[str, int] = ("", 0)

    def __init__(self, tok: dns.tokenizer.Tokenizer, origin: dns.name.Name,
                 txn: _RecordingTxn) -> None:
        super().__init__(tok, dns.rdataclass.IN, txn,  # type: ignore[arg-type]
                         allow_include=True)
        self.current_origin = origin
        self.last_name = origin

    error_at: tuple[str, int] | None = None

    def _rr_line(self) -> None:
        self.record_start = self.tok.where()
        try:
            super()._rr_line()
        except dns.exception.DNSException:
            self.error_at = self.record_start  # the tokenizer may already be on the next line
            raise

    def _generate_line(self) -> None:
        self.record_start = self.tok.where()
        try:
            super()._generate_line()
        except dns.exception.DNSException:
            self.error_at = self.record_start
            raise


_LOCATION_RE = re.compile(r"^\S+?:\d+: ")
_INCLUDE_RE = re.compile(r"^(\$INCLUDE\s+)(\S+)", re.IGNORECASE | re.MULTILINE)


def _absolute_includes(text: str, directory: str) -> str:
    """Resolve relative $INCLUDE paths against the zone file's directory, not our cwd."""

    def fix(m: re.Match[str]) -> str:
        target = m.group(2)
        quoted = target.startswith('"') and target.endswith('"') and len(target) > 1
        bare = target[1:-1] if quoted else target
        if os.path.isabs(bare):
            return m.group(0)
        return m.group(1) + os.path.join(directory, bare)

    return _INCLUDE_RE.sub(fix, text)


def read_records(path: str, text: str,
                 origin: dns.name.Name | None = None) -> tuple[dns.name.Name, list[Record]]:
    """Parse one zone file's text; raises ZoneFileError with a file:line problem."""
    if origin is None:
        try:
            origin = origin_for(path, text)
        except dns.exception.DNSException as exc:
            raise ZoneFileError([f"{path}:1: bad origin: {exc}"]) from None
    source = _absolute_includes(text, os.path.dirname(os.path.abspath(path)))
    tok = dns.tokenizer.Tokenizer(source, path)
    txn = _RecordingTxn(origin)
    reader = _Reader(tok, origin, txn)
    txn.reader = reader
    try:
        reader.read()
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        detail = _LOCATION_RE.sub("", str(exc)) or exc.__class__.__name__
        file, line = reader.error_at or reader.tok.where()
        raise ZoneFileError([f"{file}:{line}: {detail}"]) from None
    return origin, txn.records
