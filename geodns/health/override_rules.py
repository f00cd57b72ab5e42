"""The override language: one parser, one validator and one resolver for every way an
operator forces a health state (the admin-state file, the control API, ``simulate`` and
``explain``).

The admin-state file holds one rule a line::

    # PATTERN       STATE   [until TIME] [force]
    fra             down
    fra/*           drain                         # every address of fra
    sin             up      until 2026-12-01T10:00:00Z
    */192.0.2.20    down    until +30m

A pattern without ``/`` is an fnmatch glob over POP names (key ``pop``); with ``/`` it
is ``POPGLOB/ADDRGLOB`` over the POPs' addresses (key ``(pop, address)``), so resolved
overrides are keyed exactly like checked states.  Rules apply in order and later ones
win.  ``until`` is absolute (ISO 8601 with a zone) or relative (``+30m``, ``+1h30m``,
``+2d``); a relative time in a file counts from when its line first appeared (the
file's mtime when the server starts), so editing other lines never extends a drill.
``until`` may be at most :data:`MAX_AHEAD` (a year) ahead and a pattern at most
:data:`MAX_PATTERN` characters; the API keeps at most :data:`MAX_API_RULES` rules.
A line may end in ``force`` (break glass: applies even when it breaks a guard).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Final, cast

from geodns.config import Pop
from geodns.health.snapshot import STATES, HealthKey, State
from geodns.problems import Problems

__all__ = [
    "MAX_AHEAD",
    "MAX_API_RULES",
    "MAX_PATTERN",
    "OverrideError",
    "OverrideRule",
    "check_ahead",
    "check_count",
    "check_matches",
    "format_time",
    "make_rule",
    "match_targets",
    "next_expiry",
    "parse_overrides",
    "parse_pattern",
    "parse_request",
    "parse_state",
    "parse_until",
    "resolve",
    "rule_for",
    "split_line",
]

MAX_AHEAD: Final = 366 * 86400  # `until` at most this far ahead (and year 9999 never)
MAX_PATTERN: Final = 128  # characters: a 63-character POP name, '/', an IPv6 address
MAX_API_RULES: Final = 1000  # rules the API will hold (each PUT of a new pattern adds one)
_GLOB_CHARS: Final = frozenset("*?[")
_POP_PATTERN_RE = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]+$")
_ADDR_GLOB_RE = re.compile(r"^[0-9A-Fa-f.:*?\[\]!-]+$")
_RELATIVE_RE = re.compile(
    r"^\+(?:(\d{1,9})w)?(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?$")
_UNIT_SECONDS: Final = (7 * 86400, 86400, 3600, 60, 1)
_USAGE: Final = '"PATTERN STATE [until TIME] [force]"'
_TIME_EXAMPLE: Final = "e.g. 2026-12-01T10:00:00Z or +30m"
_REQUEST_KEYS: Final = frozenset({"target", "state", "until", "force"})


class OverrideError(Problems, ValueError):
    """Override rules were rejected (a ValueError, so the control API answers 400)."""


@dataclass(frozen=True, slots=True)
class OverrideRule:
    """One forced state: ``pattern`` (normalized), ``state``, optional expiry."""

    pattern: str
    state: State
    until: float | None = None  # wall clock (epoch seconds); None: until removed
    source: str = "api"  # "FILE:LINE", "api" or "simulate"
    force: bool = False  # break glass: applies even if it breaks a guard

    @property
    def ident(self) -> tuple[str, str, float | None, bool]:
        """What the rule does (not where it was written)."""
        return self.pattern, self.state, self.until, self.force

    def active(self, now: float) -> bool:
        """Not expired yet."""
        return self.until is None or now < self.until

    def matches(self, pops: Mapping[str, Pop]) -> Iterator[HealthKey]:
        """Every health key the pattern selects among ``pops`` (config order)."""
        return match_targets(self.pattern,
                             ((name, (*pop.ipv4, *pop.ipv6)) for name, pop in pops.items()))

    def describe(self) -> str:
        """The rule as a file line (absolute expiry)."""
        return self.pattern + " " + self.state + (
            f" until {format_time(self.until)}" if self.until is not None else "") + (
            " force" if self.force else "")


# --------------------------------------------------------------------------- targets


def match_targets(pattern: str,
                  pops: Iterable[tuple[str, Iterable[str]]]) -> Iterator[HealthKey]:
    """The health keys a ``pop[/address]`` glob selects among (POP name, addresses)."""
    pop_glob, sep, addr_glob = pattern.partition("/")
    for name, addresses in pops:
        if not fnmatchcase(name, pop_glob):
            continue
        if not sep:
            yield name
            continue
        for address in addresses:
            if fnmatchcase(address, addr_glob):
                yield (name, address)


def check_matches(rule: OverrideRule, pops: Mapping[str, Pop], what: str = "target") -> None:
    """OverrideError unless the rule selects some POP or address (a typo like ``frq``
    must be refused, not silently kept)."""
    if not any(True for _ in rule.matches(pops)):
        raise OverrideError([f"{what} {rule.pattern!r} matches no POP or address "
                             f"(POPs: {', '.join(pops) or 'none'})"])


def parse_pattern(text: str) -> str:
    """Validate and normalize a pattern (literal IPs canonicalized); ValueError explains."""
    if not text:
        raise ValueError("empty pattern")
    if len(text) > MAX_PATTERN:
        raise ValueError(f"pattern {text[:40]!r}... is {len(text)} characters long "
                         f"(at most {MAX_PATTERN})")
    pop_glob, sep, addr_glob = text.partition("/")
    if "/" in addr_glob:
        raise ValueError(f"bad pattern {text!r}: at most one '/' (POP/ADDRESS)")
    if not pop_glob:
        raise ValueError(f"bad pattern {text!r}: empty POP part (use */ADDRESS for any POP)")
    if not _POP_PATTERN_RE.match(pop_glob):
        raise ValueError(f"bad pattern {text!r}: POP part may only hold letters, digits, "
                         "'_', '-', '.' and glob characters * ? [ ]")
    if not sep:
        return pop_glob
    if not addr_glob:
        raise ValueError(f"bad pattern {text!r}: empty address part "
                         f"(use {pop_glob}/* for every address)")
    if _GLOB_CHARS & set(addr_glob):
        if not _ADDR_GLOB_RE.match(addr_glob):
            raise ValueError(f"bad pattern {text!r}: address glob may only hold hex digits, "
                             "'.', ':' and glob characters * ? [ ]")
        return f"{pop_glob}/{addr_glob.lower()}"
    try:
        address = str(ipaddress.ip_address(addr_glob))
    except ValueError:
        raise ValueError(f"bad pattern {text!r}: {addr_glob!r} is not an IP address") from None
    return f"{pop_glob}/{address}"


def parse_state(text: str) -> State:
    """``up``, ``down`` or ``drain`` (any case); ValueError explains."""
    state = text.lower()
    if state not in STATES:
        raise ValueError(f"unknown state {text!r} (expected up, down or drain)")
    return cast(State, state)


# --------------------------------------------------------------------------- times


def format_time(ts: float) -> str:
    """Epoch seconds as ``2026-12-01T10:00:00Z`` (sub-second precision dropped).

    Never raises: status pages must render whatever a rule holds."""
    try:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"@{ts!r}"


def parse_until(text: str, anchor: float) -> float:
    """``+30m``-style (from ``anchor``) or ISO 8601 with a zone, at most
    :data:`MAX_AHEAD` after ``anchor``; ValueError explains."""
    when = _parse_time(text, anchor)
    check_ahead(when, anchor, text)
    return when


def check_ahead(when: float, anchor: float, text: str | None = None) -> None:
    """ValueError unless ``when`` is a finite time at most MAX_AHEAD after ``anchor``."""
    if not math.isfinite(when) or when - anchor > MAX_AHEAD:
        shown = text if text is not None else repr(when)
        raise ValueError(f"until {shown!r} is more than {MAX_AHEAD // 86400} days ahead "
                         "(leave until out for an override that stays until removed)")


def _parse_time(text: str, anchor: float) -> float:
    if len(text) > 64:
        raise ValueError(f"bad time {text[:40]!r}... ({_TIME_EXAMPLE})")
    if text.startswith("+"):
        m = _RELATIVE_RE.match(text)
        if m is None or not any(m.groups()):
            raise ValueError(f"bad relative time {text!r} (e.g. +90s, +30m, +1h30m, +2d)")
        seconds = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_SECONDS, strict=True)
                      if g)
        if seconds <= 0:
            raise ValueError(f"relative time {text!r} must be positive")
        return anchor + seconds
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"bad time {text!r} ({_TIME_EXAMPLE})") from None
    if when.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone (add Z or +HH:MM)")
    try:
        return when.timestamp()
    except (OverflowError, ValueError):
        raise ValueError(f"time {text!r} is out of range") from None


def _until(value: datetime | float | str | None, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("until has no timezone")
        return value.timestamp()
    if isinstance(value, str):
        return parse_until(value, now)
    return float(value)


# --------------------------------------------------------------------------- one rule


def make_rule(pattern: str, state: str, until: datetime | float | str | None = None, *,
              now: float, force: bool = False, source: str = "api") -> OverrideRule:
    """One rule from its parts (the API, ``simulate --down``, ``explain --down``):
    validated as a file line would be; OverrideError explains."""
    try:
        norm = parse_pattern(pattern)
        st = parse_state(state)
        expires = _until(until, now)
        if expires is not None:
            check_ahead(expires, now)
    except ValueError as exc:
        raise OverrideError([str(exc)]) from None
    if expires is not None and expires <= now:
        raise OverrideError([f"until {format_time(expires)} is in the past"])
    return OverrideRule(norm, st, expires, source, force)


def parse_request(body: object, now: float) -> OverrideRule:
    """A ``PUT /overrides`` JSON body as a rule; OverrideError says what is wrong, in the
    API's words (its keys are ``target``, ``state``, ``until`` and ``force``)."""
    if not isinstance(body, dict):
        raise OverrideError(['expected a JSON object like {"target": "fra", "state": "down", '
                             '"until": "+30m"}'])
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise OverrideError([f"unknown key(s) {_short(', '.join(map(repr, unknown)))}; "
                             "expected target, state and optionally until and force"])
    target, state, until = body.get("target"), body.get("state"), body.get("until")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise OverrideError(['"force" must be true or false (true: apply even if it breaks '
                             "a guard; logged and counted)"])
    if not isinstance(target, str) or not target:
        raise OverrideError(['"target" is required: a POP ("fra"), every address of a POP '
                             '("fra/*") or one address ("fra/192.0.2.20")'])
    try:
        pattern = parse_pattern(target)
    except ValueError as exc:
        raise OverrideError([str(exc)]) from None
    if not isinstance(state, str) or state.lower() not in STATES:
        raise OverrideError([f'"state" must be one of {", ".join(STATES)}, got '
                             f'{_short(repr(state))}'])
    expires: float | None = None
    if until is not None:
        if not isinstance(until, str):
            raise OverrideError(['"until" must be a string: ISO 8601 with a zone '
                                 '("2026-12-01T10:00:00Z") or relative ("+30m")'])
        try:
            expires = parse_until(until.strip(), now)
        except ValueError as exc:
            raise OverrideError([str(exc)]) from None
        if expires <= now:
            raise OverrideError([f'"until" {until!r} is in the past'])
    return OverrideRule(pattern, cast(State, state.lower()), expires, "api", force)


def _short(text: str, limit: int = 80) -> str:
    """Client input echoed in an error, cut to a readable length."""
    return text if len(text) <= limit else text[:limit] + "..."


def check_count(rules: Sequence[OverrideRule]) -> None:
    """OverrideError when the API already holds :data:`MAX_API_RULES` rules."""
    if len(rules) >= MAX_API_RULES:
        raise OverrideError([f"{len(rules)} overrides already; at most {MAX_API_RULES} "
                             "(delete some, or use a glob)"])


# --------------------------------------------------------------------------- files


def split_line(line: str) -> list[str]:
    """A file line's words, comment dropped."""
    return line.split("#", 1)[0].split()


def parse_overrides(text: str, filename: str = "<overrides>", *, base_time: float,
                    anchors: Mapping[str, float] | None = None,
                    ) -> tuple[list[OverrideRule], dict[str, float]]:
    """Parse a whole admin-state file; raises :class:`OverrideError` with every problem.

    Relative times count from ``anchors[line]`` when the same line was seen before,
    else from ``base_time`` (the file's mtime).  Returns the rules and the anchors to
    keep for the next parse.
    """
    anchors = anchors or {}
    rules: list[OverrideRule] = []
    new_anchors: dict[str, float] = {}
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        tokens = split_line(raw)
        if not tokens:
            continue
        key = " ".join(tokens)
        anchor = anchors.get(key, base_time)
        try:
            rule = _parse_line(tokens, f"{filename}:{lineno}", anchor)
        except ValueError as exc:
            problems.append(f"{filename}:{lineno}: {exc}")
            continue
        if tokens[-1].startswith("+"):
            new_anchors[key] = anchor
        rules.append(rule)
    if problems:
        raise OverrideError(problems)
    return rules, new_anchors


def _parse_line(tokens: list[str], source: str, anchor: float) -> OverrideRule:
    force = len(tokens) > 2 and tokens[-1].lower() == "force"
    if force:
        tokens = tokens[:-1]
    if len(tokens) == 1:
        raise ValueError(f"missing the state: expected {_USAGE}")
    pattern = parse_pattern(tokens[0])
    state = parse_state(tokens[1])
    until = None
    if len(tokens) > 2:
        if tokens[2].lower() != "until":
            raise ValueError(f"expected 'until TIME' after the state, got {tokens[2]!r}")
        if len(tokens) == 3:
            raise ValueError(f"missing the time after 'until' ({_TIME_EXAMPLE})")
        if len(tokens) > 4:
            raise ValueError(f"unexpected text after the time: {' '.join(tokens[4:])!r}")
        until = parse_until(tokens[3], anchor)
    return OverrideRule(pattern, state, until, source, force)


# --------------------------------------------------------------------------- resolving


def resolve(rules: Iterable[OverrideRule], pops: Mapping[str, Pop],
            now: float) -> dict[HealthKey, State]:
    """The forced state of every key, applying active rules in order (later wins)."""
    out: dict[HealthKey, State] = {}
    for rule in rules:
        if rule.active(now):
            for key in rule.matches(pops):
                out[key] = rule.state
    return out


def next_expiry(rules: Iterable[OverrideRule], now: float) -> float | None:
    """When the next still-active rule runs out (None: none will)."""
    times = [r.until for r in rules if r.until is not None and r.until > now]
    return min(times) if times else None


def rule_for(rules: Sequence[OverrideRule], key: HealthKey, state: str,
             pops: Mapping[str, Pop], now: float) -> OverrideRule | None:
    """The active rule that decides ``key``'s forced ``state`` (the last matching one)."""
    name = key if isinstance(key, str) else key[0]
    mine = {k: p for k, p in pops.items() if k == name}
    for rule in reversed(rules):
        if rule.active(now) and rule.state == state and key in set(rule.matches(mine)):
            return rule
    return None
