"""Operator overrides in force: the rules of the admin-state file and of the API.

The rule language is :mod:`geodns.health.override_rules`; reading the file when it
changed is :mod:`geodns.health.override_poll`; rewriting it for the API is
:mod:`geodns.health.override_edit`.  This module holds the rules in force and decides
what each change does to them:

* A file with any bad line is rejected as a whole (every problem logged as
  ``FILE:LINE: problem``) and the previous rules stay; a deleted file clears them.
* Guards: when :attr:`Overrides.guard` is set (the server's steering), every new or
  changed rule, from the file or the API, is judged before it applies; a change that
  would break a pool's guard or a POP's capacity is refused whole (the file is
  rejected, the API call raises :class:`GuardRefused`), unless the rules that break
  them are marked ``force``: then they apply and the guard logs and counts them.
  Removing rules is never refused.
* The file is polled every second.  The in-memory API (:meth:`Overrides.set_override`,
  :meth:`Overrides.clear_override`) edits the same rules and, when a file is
  configured, persists them to it: edits are serialised by one lock (with the file
  polls) and the new text is checked before it is written, so concurrent requests
  never lose one another's write and a failed one changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from geodns.config import Pop
from geodns.health.override_edit import edit_text, read_text, write_atomically
from geodns.health.override_poll import AdminFile
from geodns.health.override_rules import (
    OverrideError,
    OverrideRule,
    check_count,
    make_rule,
    next_expiry,
    parse_overrides,
    parse_pattern,
    resolve,
)
from geodns.health.snapshot import HealthKey, State
from geodns.tasks import cancel

__all__ = ["POLL_INTERVAL", "GuardFn", "GuardRefused", "Overrides"]

log = logging.getLogger("geodns.health")

POLL_INTERVAL: Final = 1.0

# (rules that would apply, force) -> a verdict with .allowed and .messages()
GuardFn = Callable[[list[OverrideRule], bool], Any]


class GuardRefused(OverrideError):
    """A guard refused the change; ``verdict`` holds what it would break."""

    def __init__(self, problems: list[str], verdict: Any) -> None:
        super().__init__(problems)
        self.verdict = verdict


class Overrides:
    """The current override rules, their file watcher and the in-memory API.

    ``on_change()`` is called whenever the rules change or one of them expires; the
    owner (the health monitor) then resolves them against the POPs and publishes.
    """

    def __init__(self, path: str | Path | None, on_change: Callable[[], None] | None = None,
                 *, poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.file = AdminFile(Path(path)) if path is not None else None
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.clock = clock
        self.rules: list[OverrideRule] = []
        self.errors: list[str] = []  # problems of the last rejected file ([] when fine)
        self.loaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._active_sig: tuple[int, ...] = ()
        self._lock = asyncio.Lock()  # one file poll or API edit at a time
        self.guard: GuardFn | None = None  # judges new rules before they apply
        self._approved: str | None = None  # file text an API edit already had judged

    @property
    def path(self) -> Path | None:
        """The admin-state file (None: the API's rules live in memory only)."""
        return self.file.path if self.file is not None else None

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Read the file now, then keep watching it (and expiry times)."""
        if self.file is not None:
            await self.poll()
        self._active_sig = self._signature()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(),
                                                                name="geodns-overrides")

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        await cancel(task)

    def retarget(self, path: str | Path | None) -> bool:
        """Point at another file without reading it yet; True if the path changed."""
        new = Path(path) if path is not None else None
        if new == self.path:
            return False
        self.file = AdminFile(new) if new is not None else None
        return True

    async def set_path(self, path: str | Path | None) -> None:
        """Watch another file (config reload); its rules replace the current ones."""
        if not self.retarget(path):
            return
        if self.file is None:
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
                if self.file is not None:
                    await self.poll()
                sig = self._signature()
                if sig != self._active_sig:
                    self._active_sig = sig
                    self._prune_api()
                    self._notify()
            except Exception:  # keep watching whatever happens
                log.exception("health overrides: watcher error")

    # --- file ---------------------------------------------------------------------

    async def poll(self) -> bool:
        """Re-read the file if its identity changed; True when rules changed."""
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> bool:
        if self.file is None:
            return False
        read = await self.file.read_if_changed()
        if read is None:
            return False
        if read.removed:
            if read.was_seen or self.rules or self.errors:
                if self.rules:
                    log.info("health overrides: %s removed; overrides cleared", self.path)
                return self._replace([], [])
            return False
        if read.problems:
            self._reject(read.problems)
            return False
        approved, self._approved = self._approved, None
        if read.text != approved:
            verdict = self.judge(read.rules)
            if verdict is not None:
                self._reject([f"{self.path}: refused (nothing changed): {m}"
                              for m in verdict.messages() if not m.startswith("forced: ")]
                             + [f"{self.path}: to break glass anyway, end the line with "
                                "'force' (logged and counted)"])
                return False
        self.file.anchors = read.anchors
        now = self.clock()
        rules = read.rules
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
        if self.file is None:
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
        rule = make_rule(pattern, state, until, now=self.clock(), force=force)
        return [*(r for r in self.rules if r.pattern != rule.pattern), rule]

    # --- reading ------------------------------------------------------------------

    def resolve(self, pops: Mapping[str, Pop]) -> dict[HealthKey, State]:
        """Forced state per key right now."""
        return resolve(self.rules, pops, self.clock())

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
        rule = make_rule(pattern, state, until, now=self.clock(), force=force)
        norm = rule.pattern
        if self.file is None:
            kept = [r for r in self.rules if r.pattern != norm]
            check_count(kept)
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
        if self.file is None:
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
        assert self.file is not None
        path = self.file.path
        await self._poll()  # do not overwrite an edit we have not seen yet
        if self.errors:
            raise OverrideError([f"{path} has errors; fix it first", *self.errors])
        new_text, dropped = edit_text(await read_text(path), pattern, line)
        if line is None and not dropped:
            return False
        # What we write must load: check it exactly as the next poll will read it.
        rules, _ = parse_overrides(new_text, str(path), base_time=self.clock(),
                                   anchors=self.file.anchors)
        if line is not None:
            check_count(rules[:-1])
            _raise_refused(self.judge(rules))
            self._approved = new_text  # judged: the poll below applies it as it is
        await write_atomically(path, new_text)
        await self._poll()
        return True


def _raise_refused(verdict: Any) -> None:
    if verdict is not None:
        messages = [m for m in verdict.messages() if not m.startswith("forced: ")]
        raise GuardRefused(messages, verdict)

