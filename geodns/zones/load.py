"""Read RFC 1035 master files with dnspython, keeping file:line for every record.

dnspython's zone reader silently drops records outside the zone and resolves
CNAME-and-other-data conflicts by discarding data; an operator must hear about
both, so we feed its Reader a recording transaction and validate ourselves.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Final

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl
import dns.zonefile

from geodns.problems import Problems
from geodns.zones import dyna
from geodns.zones.names import lines

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


MAX_ZONE_FILE_BYTES: Final = 1 << 30  # a zone of a million records is about 32 MB


def check_zone_file(path: str) -> None:
    """Only regular files of sane size are read (a FIFO or /dev/zero would hang a reload
    or fill memory); OSError says why not."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path} is not a regular file")
    if st.st_size > MAX_ZONE_FILE_BYTES:
        raise OSError(f"{path} is {st.st_size} bytes, more than the {MAX_ZONE_FILE_BYTES} "
                      "a zone file may have")


def is_zone_file(name: str) -> bool:
    """Zone files are the directory's plain files, minus hidden, backup and include files."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES) \
        and not name.startswith("#")


_ORIGIN_RE = re.compile(r"^\$ORIGIN\s+(\S+)", re.IGNORECASE)


def origin_for(path: str, text: str) -> dns.name.Name:
    """The file's leading $ORIGIN, else its name without a trailing `.zone`."""
    for raw in lines(text):  # line by line: a zone file may have a million lines
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


class _Tokenizer(dns.tokenizer.Tokenizer):
    """dnspython's tokenizer, remembering the last token and the line it was on, so an
    error is reported on the line where the parser stopped (and recovery knows whether
    the broken line was already read to its end)."""

    last: dns.tokenizer.Token | None = None  # None: the tokenizer itself failed
    last_line = 1
    line_tokens: list[str]
    leading_blank = False

    def get(self, want_leading: bool = False,
            want_comment: bool = False) -> dns.tokenizer.Token:
        replay = self.ungotten_token is not None  # already seen (and recorded) once
        try:
            token = super().get(want_leading, want_comment)
        except dns.exception.DNSException:
            self.last = None
            raise
        self.last = token
        if replay:
            return token
        # A token followed by a newline has already counted that newline.
        ended = token.is_eol() or self.ungotten_char == "\n"
        self.last_line = self.line_number - 1 if ended else self.line_number
        if token.is_identifier() or token.is_quoted_string():
            self.line_tokens.append(token.value)
        return token

    def error_line(self) -> int:
        if self.last is not None:
            return self.last_line
        # The tokenizer failed: inside a quote it had just read the newline.
        return self.line_number - 1 if self.quoting and not self.eof else self.line_number

    def skip_line(self) -> None:
        """After an error: move to the start of the next line (or to EOF)."""
        if self.last is None:
            self._reset()
            return
        if self.ungotten_token is not None:
            if self.ungotten_token.is_eol_or_eof():
                self.ungotten_token = None
                return
        elif self.last.is_eol_or_eof():
            return  # the broken line was read to its end already
        for _ in range(1_000_000):
            try:
                token = self.get()
            except dns.exception.DNSException:
                self._reset()
                return
            if token.is_eol_or_eof():
                return

    def _reset(self) -> None:
        """The tokenizer failed mid-token (quote, parenthesis): drop the physical line."""
        newline_eaten = self.quoting  # "newline in quoted string" consumed the newline
        self.quoting = False
        self.delimiters = dns.tokenizer._DELIMITERS
        self.multiline = 0
        self.ungotten_token = None
        if newline_eaten:
            return
        while True:
            c = self._get_char()
            if c in ("", "\n"):
                return


def _new_tokenizer(source: Any, filename: str) -> _Tokenizer:
    tok = _Tokenizer(source, filename)
    tok.line_tokens = []
    return tok


class _Reader(dns.zonefile.Reader):
    """dnspython's zone-file Reader, reading on after an error so every problem in a
    file is reported (like NSD and Knot), each on its line, in our own words."""

    record_start: tuple[str, int] = ("", 0)
    tok: _Tokenizer

    def __init__(self, tok: _Tokenizer, origin: dns.name.Name,
                 txn: _RecordingTxn) -> None:
        super().__init__(tok, dns.rdataclass.IN, txn,  # type: ignore[arg-type]
                         allow_include=True)
        self.current_origin = origin
        self.last_name = origin
        self.problems: list[str] = []

    def read(self) -> None:
        """Every line in turn; a bad line becomes a problem and reading goes on."""
        while True:
            tok = self.tok
            tok.line_tokens = []
            tok.leading_blank = False
            try:
                token = tok.get(True, True)
            except dns.exception.DNSException as exc:
                self._problem(exc, None)
                tok.skip_line()
                continue
            if token.is_eof():
                if not self._pop_include():
                    break
                continue
            if token.is_eol():
                continue
            if token.is_comment():
                tok.get_eol()
                continue
            directive = token.is_identifier() and token.value.startswith("$")
            tok.leading_blank = token.is_whitespace()
            self.record_start = (tok.filename, tok.last_line)
            try:
                if directive:
                    self._directive(token.value.upper())
                else:
                    tok.unget(token)
                    self._rr_line()
            except (dns.exception.DNSException, ValueError) as exc:
                self._problem(exc, token.value.upper() if directive else None)
                tok.skip_line()
            except OSError as exc:  # $INCLUDE of a file that cannot be read
                self._problem(exc, "$INCLUDE")

    def _pop_include(self) -> bool:
        """End of an $INCLUDEd file: back to the including one (False: all done)."""
        if self.current_file is not None:
            self.current_file.close()
        if not self.saved_state:
            return False
        (tok, self.current_origin, self.last_name, self.current_file, self.last_ttl,
         self.last_ttl_known, self.default_ttl, self.default_ttl_known,
         self.default_ttl_from_soa) = self.saved_state.pop(-1)
        assert isinstance(tok, _Tokenizer)
        self.tok = tok
        return True

    def _directive(self, name: str) -> None:
        tok = self.tok
        if name == "$TTL":
            token = tok.get()
            if not token.is_identifier():
                raise _Problem("$TTL needs a value, e.g. $TTL 3600 or $TTL 1h")
            self.default_ttl = _ttl(token.value)
            self.default_ttl_known = True
            self.default_ttl_from_soa = False
            tok.get_eol()
        elif name == "$ORIGIN":
            origin = tok.get_name(self.current_origin)
            tok.get_eol()
            self.current_origin = origin
        elif name == "$INCLUDE":
            token = tok.get()
            if not (token.is_identifier() or token.is_quoted_string()):
                raise _Problem("$INCLUDE needs a file name")
            filename = token.value
            token = tok.get()
            new_origin = self.current_origin
            if token.is_identifier():
                new_origin = dns.name.from_text(token.value, self.current_origin)
                tok.get_eol()
            elif not token.is_eol_or_eof():
                raise _Problem("$INCLUDE takes a file name and an optional origin")
            try:
                check_zone_file(filename)
                handle = open(filename, encoding="utf-8")  # noqa: SIM115 - closed on EOF
            except OSError as exc:
                raise OSError(f"cannot read $INCLUDE file {filename}: "
                              f"{exc.strerror or exc}") from None
            self.saved_state.append((
                self.tok, self.current_origin, self.last_name, self.current_file,
                self.last_ttl, self.last_ttl_known, self.default_ttl,
                self.default_ttl_known, self.default_ttl_from_soa))
            self.current_file = handle
            self.tok = _new_tokenizer(handle, filename)
            self.current_origin = new_origin
        elif name == "$GENERATE":
            self._generate_line()
        else:
            raise _Problem(f"unknown directive {name} (geodns reads $ORIGIN, $TTL, "
                           "$INCLUDE and $GENERATE)")

    def _problem(self, exc: BaseException, directive: str | None) -> None:
        tok = self.tok
        if isinstance(exc, OSError) and directive == "$INCLUDE":
            file, line = self.record_start
        else:
            file, line = tok.filename, tok.error_line()
        self.problems.append(f"{file}:{line}: {explain(exc, tok, directive)}")


class _Problem(dns.exception.DNSException):
    """A problem already in our words."""


def _ttl(text: str) -> int:
    try:
        return int(dns.ttl.from_text(text))
    except dns.ttl.BadTTL:
        raise _Problem(f"bad TTL {text!r} (seconds, or units like 1h30m; at most "
                       f"{MAX_TTL})") from None


MAX_TTL = 2**31 - 1

# What one-value records hold ("'x' is not an IPv4 address"), and what others expect.
_IS_NOT = {"A": "an IPv4 address", "AAAA": "an IPv6 address"}
_EXPECTS = {
    "A": "an IPv4 address", "AAAA": "an IPv6 address", "MX": "a preference and a host name",
    "NS": "a host name", "CNAME": "a domain name", "PTR": "a domain name",
    "DNAME": "a domain name", "SRV": "priority, weight, port and target",
    "SOA": "primary name server, mailbox, serial, refresh, retry, expire and minimum",
    "TXT": "one or more strings", "CAA": "flags, tag and value",
    "DYNA": "a pool name from geodns.toml",
}


def _record_type(tokens: list[str], leading_blank: bool) -> str | None:
    """The record type on a line, as the parser saw it: [name] [ttl] [class] type."""
    rest = tokens if leading_blank else tokens[1:]
    for value in rest[:3]:
        upper = value.upper()
        if upper in ("IN", "CH", "HS", "CS", "ANY", "NONE") or upper.startswith("CLASS"):
            continue
        try:
            dns.ttl.from_text(value)
            continue
        except dns.ttl.BadTTL:
            pass
        try:
            return dns.rdatatype.to_text(dns.rdatatype.from_text(upper))
        except dns.exception.DNSException:
            return None
    return None


def explain(exc: BaseException, tok: _Tokenizer, directive: str | None) -> str:
    """One problem in an operator's words (never the tokenizer's internals)."""
    if isinstance(exc, _Problem | OSError):
        return str(exc)
    text = str(exc)
    last = tok.last.value if tok.last is not None and not tok.last.is_eol_or_eof() else None
    near = f" near {last!r}" if last else ""
    if directive == "$GENERATE":
        return ("bad $GENERATE line: expected $GENERATE RANGE OWNER [TTL] [CLASS] TYPE "
                f"RDATA, e.g. $GENERATE 1-10 host$ A 192.0.2.$){near}")
    if directive == "$ORIGIN":
        return f"bad $ORIGIN{near}: expected one domain name"
    if directive == "$TTL":
        return f"bad $TTL{near}: expected one value like 3600 or 1h"
    if "newline in quoted string" in text or (isinstance(exc, dns.exception.UnexpectedEnd)
                                              and tok.quoting):
        return "a quoted string is not closed before the end of the line"
    if "unbalanced parentheses" in text:
        return "unbalanced parentheses: a '(' is never closed"
    if tok.last is None and text == "Text input is malformed.":
        return "unbalanced parentheses: ')' without a matching '('"
    m = re.match(r"unknown rdatatype '(.*)'", text)
    if m:
        word = m.group(1)
        if word[:1].isdigit():
            return f"bad TTL {word!r} (seconds, or units like 1h30m; at most {MAX_TTL})"
        return f"unknown record type {word!r}"
    if "RR class is not zone's class" in text:
        return "only class IN is served (this record has another class)"
    if "Missing default TTL" in text:
        return "no TTL for this record: give it one, or put $TTL before it"
    if "last used name is undefined" in text:
        return "the line starts with a blank (same name as before) but no name came before"
    if isinstance(exc, dns.name.LabelTooLong):
        return f"a label is longer than 63 bytes{near}"
    if isinstance(exc, dns.name.NameTooLong):
        return f"a name is longer than 255 bytes{near}"
    if isinstance(exc, dns.name.EmptyLabel):
        return f"empty label (two dots in a row?){near}"
    if isinstance(exc, dns.name.BadEscape):
        return f"bad backslash escape{near}"
    rtype = _record_type(tok.line_tokens, tok.leading_blank)
    what = f"{rtype} record" if rtype else "record"
    expects = f": expected {_EXPECTS[rtype]}" if rtype in _EXPECTS else ""
    m = re.match(r'expected EOL or EOF, got \d+ "(.*)"', text)
    if m:
        still_open = " (a '(' in it is never closed)" if tok.multiline else ""
        return f"unexpected {m.group(1)!r} after the {what} data{still_open}"
    if (tok.last is not None and tok.last.is_eol_or_eof()) or \
            isinstance(exc, dns.exception.UnexpectedEnd):
        return f"the {what} ends too early{expects}"
    if text.startswith("expecting an integer"):
        return f"bad {what}: {last!r} is not a number{expects}"
    if text.startswith("bad DYNA pool name"):
        return f"bad DYNA record: {text.removeprefix('bad DYNA ')}"
    if last is not None and rtype in _IS_NOT:
        return f"bad {what}: {last!r} is not {_IS_NOT[rtype]}"
    if last is not None:
        return f"bad {what} near {last!r}{expects}"
    detail = re.sub(r"^caught exception <class '[\w.]+'>: ", "", text)
    return f"bad {what}: {detail}"


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


def ns_target_problems(origin: dns.name.Name, records: list[Record]) -> list[str]:
    """In-zone NS targets (apex and delegations) need an A or AAAA record in the zone;
    each problem is reported on the line of the NS record that names the target."""
    addressed = {r.name for r in records
                 if r.rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
    problems = []
    for r in records:
        if r.rdata.rdtype != dns.rdatatype.NS or not r.name.is_subdomain(origin):
            continue
        target = r.rdata.target  # type: ignore[attr-defined]
        if target.is_subdomain(origin) and target not in addressed:
            problems.append(f"{r.file}:{r.line}: NS target {target} is inside the zone "
                            "but has no A or AAAA record")
    return problems


def parse_records(path: str, text: str, origin: dns.name.Name | None = None,
                  ) -> tuple[dns.name.Name, list[Record], list[str]]:
    """Every record that parsed, and every ``file:line: problem`` (reading goes on after
    a bad line, as NSD and Knot do)."""
    if origin is None:
        try:
            origin = origin_for(path, text)
        except dns.exception.DNSException as exc:
            return dns.name.root, [], [f"{path}:1: bad $ORIGIN: {exc}"]
    source = _absolute_includes(text, os.path.dirname(os.path.abspath(path)))
    txn = _RecordingTxn(origin)
    reader = _Reader(_new_tokenizer(source, path), origin, txn)
    txn.reader = reader
    reader.read()
    return origin, txn.records, reader.problems


def read_records(path: str, text: str,
                 origin: dns.name.Name | None = None) -> tuple[dns.name.Name, list[Record]]:
    """Parse one zone file's text; raises ZoneFileError with every ``file:line:
    problem`` in it."""
    origin, records, problems = parse_records(path, text, origin)
    if problems:
        raise ZoneFileError(problems)
    return origin, records
