"""Operator overrides: force a POP or an address up, down or drain (drills, maintenance).

The admin-state file is the source of truth, one rule a line::

    # PATTERN       STATE   [until TIME]
    fra             down
    fra/*           drain                         # every address of fra
    sin             up      until 2026-12-01T10:00:00Z
    */192.0.2.20    down    until +30m

A pattern without ``/`` is an fnmatch glob over POP names (key ``pop``); with ``/`` it
is ``POPGLOB/ADDRGLOB`` over the POPs' addresses (key ``(pop, address)``), so the
published overrides are keyed exactly like checked states.  Rules apply in order and
later lines win.  ``until`` is absolute (ISO 8601 with a zone) or relative
(``+30m``, ``+1h30m``, ``+2d``); a relative time counts from when its line first
appeared (the file's mtime when the server starts), so editing other lines never
extends a drill.  ``until`` may be at most :data:`MAX_AHEAD` (a year) ahead and a
pattern at most :data:`MAX_PATTERN` characters; the API keeps at most
:data:`MAX_API_RULES` rules.

A line may end in ``force`` (break glass, below).  A file with any bad line is
rejected as a whole (every problem logged as ``FILE:LINE: problem``) and the previous
rules stay; a deleted file clears them.

Guards: when :attr:`Overrides.guard` is set (the server's steering), every new or
changed rule, from the file or the API, is judged before it applies; a change that
would break a pool's guard or a POP's capacity is refused whole (the file is
rejected, the API call raises :class:`GuardRefused`), unless the rules that break
them are marked ``force``: then they apply and the guard logs and counts them.
Removing rules is never refused.
The file is polled (mtime, size, inode) every second and read with aiofiles.  The
in-memory API (:meth:`Overrides.set_override`, :meth:`Overrides.clear_override`)
edits the same rules and, when a file is configured, persists them to it: edits are
serialised by one lock (with the file polls), the new text is checked before it is
written, and it is written to a unique temporary file renamed over the old one, so
concurrent requests never lose one another's write and a failed one changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final, cast

import aiofiles
import aiofiles.os

from geodns.config import Pop
from geodns.health.snapshot import STATES, HealthKey, State
from geodns.problems import Problems

__all__ = [
    "MAX_AHEAD",
    "MAX_API_RULES",
    "MAX_PATTERN",
    "GuardFn",
    "GuardRefused",
    "OverrideError",
    "OverrideRule",
    "Overrides",
    "format_time",
    "next_expiry",
    "parse_overrides",
    "parse_pattern",
    "parse_until",
    "resolve",
]

log = logging.getLogger("geodns.health")

POLL_INTERVAL: Final = 1.0
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


class OverrideError(Problems, ValueError):
    """Override rules were rejected (a ValueError, so the control API answers 400)."""


class GuardRefused(OverrideError):
    """A guard refused the change; ``verdict`` holds what it would break."""

    def __init__(self, problems: list[str], verdict: Any) -> None:
        super().__init__(problems)
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class OverrideRule:
    """One forced state: ``pattern`` (normalized), ``state``, optional expiry."""

    pattern: str
    state: State
    until: float | None = None  # wall clock (epoch seconds); None: until removed
    source: str = "api"  # "FILE:LINE" or "api"
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

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """Plain data for the control API and status pages."""
        now = time.time() if now is None else now
        return {"pattern": self.pattern, "state": self.state,
                "until": format_time(self.until) if self.until is not None else None,
                "active": self.active(now), "source": self.source, "force": self.force}


# --------------------------------------------------------------------------- parsing


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


def format_time(ts: float) -> str:
    """Epoch seconds as ``2026-12-01T10:00:00Z`` (sub-second precision dropped).

    Never raises: status pages must render whatever a rule holds."""
    try:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"@{ts!r}"


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


def _parse_state(text: str) -> State:
    state = text.lower()
    if state not in STATES:
        raise ValueError(f"unknown state {text!r} (expected up, down or drain)")
    return cast(State, state)


def _split(line: str) -> list[str]:
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
        tokens = _split(raw)
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
    state = _parse_state(tokens[1])
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


# --------------------------------------------------------------------------- watcher


Fingerprint = tuple[int, int, int]
# (rules that would apply, force) -> a verdict with .allowed and .messages()
GuardFn = Callable[[list[OverrideRule], bool], Any]


class Overrides:
    """The current override rules, their file watcher and the in-memory API.

    ``on_change()`` is called whenever the rules change or one of them expires; the
    owner (the health monitor) then resolves them against the POPs and publishes.
    """

    def __init__(self, path: str | Path | None, on_change: Callable[[], None] | None = None,
                 *, poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.clock = clock
        self.rules: list[OverrideRule] = []
        self.errors: list[str] = []  # problems of the last rejected file ([] when fine)
        self.loaded_at: float | None = None
        self._anchors: dict[str, float] = {}
        self._seen: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._active_sig: tuple[int, ...] = ()
        self._lock = asyncio.Lock()  # one file poll or API edit at a time
        self.guard: GuardFn | None = None  # judges new rules before they apply
        self._approved: str | None = None  # file text an API edit already had judged

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Read the file now, then keep watching it (and expiry times)."""
        if self.path is not None:
            await self.poll()
        self._active_sig = self._signature()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(),
                                                                name="geodns-overrides")

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def retarget(self, path: str | Path | None) -> bool:
        """Point at another file without reading it yet; True if the path changed."""
        new = Path(path) if path is not None else None
        if new == self.path:
            return False
        self.path, self._seen, self._anchors = new, None, {}
        return True

    async def set_path(self, path: str | Path | None) -> None:
        """Watch another file (config reload); its rules replace the current ones."""
        if not self.retarget(path):
            return
        if self.path is None:
            self._replace([], [])
        else:
            await self.poll()
        self._wake.set()

    async def _watch(self) -> None:
        while True:
            now = self.clock()
            wait = self.poll_interval
            expiry = next_expiry(self.rules, now)
            if expiry is not None:
                wait = max(0.0, min(wait, expiry - now + 0.001))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            try:
                if self.path is not None:
                    await self.poll()
                sig = self._signature()
                if sig != self._active_sig:
                    self._active_sig = sig
                    self._prune_api()
                    self._notify()
            except Exception:  # keep watching whatever happens
                log.exception("health overrides: watcher error")

    # --- file ---------------------------------------------------------------------

    async def _stat(self) -> tuple[Fingerprint, float] | None:
        assert self.path is not None
        try:
            st = await aiofiles.os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino), st.st_mtime

    async def poll(self) -> bool:
        """Re-read the file if its (mtime, size, inode) changed; True when rules changed."""
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> bool:
        if self.path is None:
            return False
        try:
            found = await self._stat()
        except OSError as exc:
            log.error("%s:0: cannot stat: %s", self.path, exc.strerror or exc)
            return False
        if found is None:
            if self._seen is not None or self.rules or self.errors:
                self._seen = None
                if self.rules:
                    log.info("health overrides: %s removed; overrides cleared", self.path)
                return self._replace([], [])
            return False
        fingerprint, mtime = found
        if fingerprint == self._seen:
            return False
        self._seen = fingerprint
        try:
            async with aiofiles.open(self.path, "rb") as f:
                raw = await f.read()
        except FileNotFoundError:
            return False  # raced with a delete: the next poll sees it
        except OSError as exc:
            self._reject([f"{self.path}:0: cannot read: {exc.strerror or exc}"])
            return False
        return self._load_text(raw, mtime)

    def _load_text(self, raw: bytes, mtime: float) -> bool:
        assert self.path is not None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self._reject([f"{self.path}:{line}: not valid UTF-8"])
            return False
        try:
            rules, anchors = parse_overrides(text, str(self.path), base_time=mtime,
                                             anchors=self._anchors)
        except OverrideError as exc:
            self._reject(exc.problems)
            return False
        approved, self._approved = self._approved, None
        if text != approved:
            verdict = self.judge(rules)
            if verdict is not None:
                self._reject([f"{self.path}: refused (nothing changed): {m}"
                              for m in verdict.messages() if not m.startswith("forced: ")]
                             + [f"{self.path}: to break glass anyway, end the line with "
                                "'force' (logged and counted)"])
                return False
        self._anchors = anchors
        now = self.clock()
        active = sum(r.active(now) for r in rules)
        log.info("health overrides: loaded %s: %d rule%s, %d active", self.path, len(rules),
                 "" if len(rules) == 1 else "s", active)
        return self._replace(rules, [])

    def _reject(self, problems: list[str]) -> None:
        for problem in problems:
            log.error("%s", problem)
        log.error("health overrides: rejected %s (%d problem%s); keeping the previous "
                  "%d rule%s", self.path, len(problems), "" if len(problems) == 1 else "s",
                  len(self.rules), "" if len(self.rules) == 1 else "s")
        self.errors = problems

    def _replace(self, rules: list[OverrideRule], errors: list[str]) -> bool:
        changed = rules != self.rules
        self.rules = rules
        self.errors = errors
        self.loaded_at = self.clock()
        if changed:
            self._active_sig = self._signature()
            self._notify()
        return changed

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("health overrides: on_change callback failed")

    def _signature(self) -> tuple[int, ...]:
        now = self.clock()
        return tuple(i for i, r in enumerate(self.rules) if r.active(now))

    def _prune_api(self) -> None:
        if self.path is None:
            now = self.clock()
            self.rules = [r for r in self.rules if r.active(now)]
            self._active_sig = self._signature()

    # --- guards -------------------------------------------------------------------

    def judge(self, rules: list[OverrideRule]) -> Any:
        """The guard's refusal of replacing the current rules by ``rules`` (None: allowed).

        Only new or changed rules are judged: those marked ``force`` are left out of
        the judged change, then applied with the guard told so (it logs and counts
        what they break)."""
        if self.guard is None:
            return None
        old = {r.ident for r in self.rules}
        fresh = [r for r in rules if r.ident not in old]
        if not fresh:
            return None
        forced = {id(r) for r in fresh if r.force}
        verdict = self.guard([r for r in rules if id(r) not in forced], False)
        if not verdict.allowed:
            return verdict
        if forced:
            self.guard(rules, True)
        return None

    def proposed(self, pattern: str, state: str, until: datetime | float | str | None = None,
                 force: bool = False) -> list[OverrideRule]:
        """The rules an API ``set_override`` would leave (for dry runs); OverrideError
        on bad input."""
        rule = self._rule(pattern, state, until, force)
        return [*(r for r in self.rules if r.pattern != rule.pattern), rule]

    def _rule(self, pattern: str, state: str, until: datetime | float | str | None,
              force: bool) -> OverrideRule:
        now = self.clock()
        try:
            norm = parse_pattern(pattern)
            st = _parse_state(state)
            expires = _until(until, now)
            if expires is not None:
                check_ahead(expires, now)
        except ValueError as exc:
            raise OverrideError([str(exc)]) from None
        if expires is not None and expires <= now:
            raise OverrideError([f"until {format_time(expires)} is in the past"])
        return OverrideRule(norm, st, expires, "api", force)

    # --- reading ------------------------------------------------------------------

    def resolve(self, pops: Mapping[str, Pop]) -> dict[HealthKey, State]:
        """Forced state per key right now."""
        return resolve(self.rules, pops, self.clock())

    def status(self) -> dict[str, Any]:
        """Plain data: file, rules (with activity), last rejection problems."""
        now = self.clock()
        return {"file": str(self.path) if self.path is not None else None,
                "rules": [r.as_dict(now) for r in self.rules],
                "errors": list(self.errors)}

    # --- in-memory API ------------------------------------------------------------

    async def set_override(self, pattern: str, state: str,
                           until: datetime | float | str | None = None,
                           force: bool = False) -> OverrideRule:
        """Force ``pattern`` to ``state`` (optionally until a time); replaces an earlier
        rule with the same pattern and wins over every other rule (it goes last).

        Persisted to the admin-state file when one is configured.  Raises
        :class:`OverrideError` on a bad pattern, state or time, or when the file
        currently has errors (fix the file first); :class:`GuardRefused` when a guard
        refuses it (``force``: apply it anyway, break glass).
        """
        rule = self._rule(pattern, state, until, force)
        norm = rule.pattern
        if self.path is None:
            kept = [r for r in self.rules if r.pattern != norm]
            _check_count(kept)
            _raise_refused(self.judge([*kept, rule]))
            self._replace([*kept, rule], [])
            return rule
        await self._edit_file(norm, rule.describe())
        return next((r for r in reversed(self.rules) if r.pattern == norm), rule)

    async def clear_override(self, pattern: str) -> bool:
        """Remove every rule with exactly this pattern; True if there was one."""
        try:
            norm = parse_pattern(pattern)
        except ValueError as exc:
            raise OverrideError([str(exc)]) from None
        if self.path is None:
            if not any(r.pattern == norm for r in self.rules):
                return False
            self._replace([r for r in self.rules if r.pattern != norm], [])
            return True
        return await self._edit_file(norm, None)

    async def _edit_file(self, pattern: str, line: str | None) -> bool:
        """Drop the lines for ``pattern``, append ``line``; checked, written to a unique
        temporary file and renamed, then applied.  False when there was nothing to drop
        (and nothing to add).  Serialised with every other edit and poll."""
        async with self._lock:
            return await self._edit_locked(pattern, line)

    async def _edit_locked(self, pattern: str, line: str | None) -> bool:
        assert self.path is not None
        await self._poll()  # do not overwrite an edit we have not seen yet
        if self.errors:
            raise OverrideError([f"{self.path} has errors; fix it first", *self.errors])
        try:
            async with aiofiles.open(self.path, encoding="utf-8") as f:
                text = await f.read()
        except FileNotFoundError:
            text = ""
        kept = []
        dropped = False
        for old in text.splitlines():
            tokens = _split(old)
            if tokens:
                with contextlib.suppress(ValueError):
                    if parse_pattern(tokens[0]) == pattern:
                        dropped = True
                        continue
            kept.append(old)
        if line is None and not dropped:
            return False
        if line is not None:
            kept.append(line)
        new_text = "".join(x + "\n" for x in kept)
        # What we write must load: check it exactly as the next poll will read it.
        rules, _ = parse_overrides(new_text, str(self.path), base_time=self.clock(),
                                   anchors=self._anchors)
        if line is not None:
            _check_count(rules[:-1])
            _raise_refused(self.judge(rules))
            self._approved = new_text  # judged: the poll below applies it as it is
        await _write_atomically(self.path, new_text)
        await self._poll()
        return True


async def _write_atomically(path: Path, text: str) -> None:
    """A unique temporary file in the same directory, renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
        os.fchmod(fd, mode)  # keep the operator's permissions, not mkstemp's 0600
    finally:
        os.close(fd)
    try:
        async with aiofiles.open(tmp, "w", encoding="utf-8") as f:
            await f.write(text)
        await aiofiles.os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _raise_refused(verdict: Any) -> None:
    if verdict is not None:
        messages = [m for m in verdict.messages() if not m.startswith("forced: ")]
        raise GuardRefused(messages, verdict)


def _check_count(rules: list[OverrideRule]) -> None:
    if len(rules) >= MAX_API_RULES:
        raise OverrideError([f"{len(rules)} overrides already; at most {MAX_API_RULES} "
                             "(delete some, or use a glob)"])


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
