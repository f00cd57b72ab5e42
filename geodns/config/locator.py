"""Key path -> source line, because tomllib reports no positions for values."""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib

from geodns.config.model import KeyPath

_BARE_RUN_RE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_RE = re.compile(r"[^,\]}\r\n#]*")


class TomlLocator:
    """Maps key paths to the line where they are written in a TOML text.

    Runs only on text tomllib already accepted, so it can be permissive.  Records
    table headers (and their implicit parents), keys (dotted and inside inline
    tables) and array elements; :meth:`line` falls back to the nearest recorded
    parent, i.e. the enclosing table's line.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._pos: dict[KeyPath, int] = {}
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._scan()  # best effort: unrecorded lines fall back to parents

    def line(self, path: KeyPath) -> int:
        """1-based line of ``path``, or of its nearest recorded parent (1 if none)."""
        for n in range(len(path), 0, -1):
            off = self._pos.get(path[:n])
            if off is not None:
                return bisect.bisect_right(self._starts, off)
        return 1

    # scanning -------------------------------------------------------------

    def _record(self, path: KeyPath, off: int) -> None:
        for n in range(1, len(path) + 1):
            self._pos.setdefault(path[:n], off)

    def _scan(self) -> None:
        s = self._s
        table: KeyPath = ()
        aot: dict[KeyPath, int] = {}
        while True:
            self._skip(newlines=True)
            if self._i >= len(s):
                return
            start = self._i
            if s.startswith("[[", start):
                self._i += 2
                path = self._key()
                self._skip()
                self._i += 2  # ]]
                idx = aot.get(path, -1) + 1
                aot[path] = idx
                table = (*path, idx)
                self._record(table, start)
            elif s[start] == "[":
                self._i += 1
                table = self._key()
                self._skip()
                self._i += 1  # ]
                self._record(table, start)
            else:
                self._keyval(table)

    def _keyval(self, prefix: KeyPath) -> None:
        start = self._i
        path = (*prefix, *self._key())
        self._record(path, start)
        self._skip()
        self._i += 1  # =
        self._skip()
        self._value(path)

    def _skip(self, newlines: bool = False) -> None:
        s = self._s
        n = len(s)
        while self._i < n:
            c = s[self._i]
            if c in " \t" or (newlines and c in "\r\n"):
                self._i += 1
            elif c == "#":
                while self._i < n and s[self._i] != "\n":
                    self._i += 1
            else:
                return

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        s = self._s
        while True:
            self._skip()
            c = s[self._i]
            if c == '"':
                start = self._i
                self._string()
                parts.append(tomllib.loads("k = " + s[start : self._i])["k"])
            elif c == "'":
                end = s.index("'", self._i + 1)
                parts.append(s[self._i + 1 : end])
                self._i = end + 1
            else:
                m = _BARE_RUN_RE.match(s, self._i)
                if m is None:
                    raise ValueError("bad key")
                parts.append(m.group())
                self._i = m.end()
            self._skip()
            if self._i < len(s) and s[self._i] == ".":
                self._i += 1
                continue
            return tuple(parts)

    def _string(self) -> None:
        s = self._s
        q = s[self._i]
        if s.startswith(q * 3, self._i):
            self._i += 3
            while True:
                if q == '"' and s[self._i] == "\\":
                    self._i += 2
                    continue
                if s.startswith(q * 3, self._i):
                    self._i += 3
                    extra = 0
                    while extra < 2 and self._i < len(s) and s[self._i] == q:
                        self._i += 1
                        extra += 1
                    return
                self._i += 1
        self._i += 1
        while s[self._i] != q:
            self._i += 2 if (q == '"' and s[self._i] == "\\") else 1
        self._i += 1

    def _value(self, path: KeyPath) -> None:
        s = self._s
        c = s[self._i]
        if c in "\"'":
            self._string()
        elif c == "[":
            self._i += 1
            idx = 0
            while True:
                self._skip(newlines=True)
                if s[self._i] == "]":
                    self._i += 1
                    return
                if s[self._i] == ",":
                    self._i += 1
                    continue
                self._record((*path, idx), self._i)
                self._value((*path, idx))
                idx += 1
        elif c == "{":
            self._i += 1
            while True:
                self._skip(newlines=True)
                if s[self._i] == "}":
                    self._i += 1
                    return
                if s[self._i] == ",":
                    self._i += 1
                    continue
                self._keyval(path)
        else:
            m = _SCALAR_RE.match(s, self._i)
            assert m is not None
            self._i = m.end()
