"""Problem collection shared by every section parser.

Parsers record problems by key path and carry on, so one run reports them all;
lines are looked up via :class:`TomlLocator` only when a problem is recorded.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, cast

from geodns.config.locator import TomlLocator
from geodns.config.model import IPNetwork, KeyPath

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
COUNTRY_RE: Final = re.compile(r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2, upper case
SUBDIVISION_RE: Final = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")  # ISO 3166-2
_ASN_RE: Final = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)
ASN_EXPECTED: Final = 'expected an AS number like 13335 or "AS13335"'
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: KeyPath) -> str:
    """``pools.api.nets."10.0.0.0/8"[0]``: TOML-like, quoting non-bare keys."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY_RE.match(part) else '"' + part.replace('"', '\\"') + '"'
            out += ("." if out else "") + key
    return out


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "datetime"


class _Missing:
    pass


_MISSING: Final = _Missing()


class _Validator:
    """Collects problems with their key paths; lines are resolved at the end."""

    def __init__(self, filename: str, locator: TomlLocator, base_dir: Path) -> None:
        self.filename = filename
        self.locator = locator
        self.base_dir = base_dir
        self.problems: list[tuple[int, str]] = []

    def error(self, path: KeyPath, problem: str) -> None:
        line = self.locator.line(path)
        self.problems.append((line, f"{self.filename}:{line}: {format_path(path)}: {problem}"))

    def messages(self) -> list[str]:
        return [msg for _, msg in sorted(self.problems, key=lambda p: p[0])]

    # generic helpers --------------------------------------------------------

    def table(self, value: object, path: KeyPath) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, f"expected a table, got {_type_name(value)}")
        return None

    def keys(self, tbl: Mapping[str, Any], path: KeyPath, allowed: Iterable[str],
             context: str = "") -> None:
        """Flag every key not in ``allowed`` (with a did-you-mean hint)."""
        allowed = list(allowed)
        for key in tbl:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.error((*path, key), f"unknown key{context}{hint}")

    def number(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: Any,
               lo: float | None = None, hi: float | None = None, integer: bool = False,
               lo_open: bool = False) -> Any:
        value: Any = tbl.get(key, _MISSING)
        kp = (*path, key)
        if value is _MISSING:
            if default is _MISSING:
                self.error(kp, "missing required key")
                return None
            return default
        ok_types: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            want = "an integer" if integer else "a number"
            self.error(kp, f"expected {want}, got {_type_name(value)}")
            return None
        num = float(cast(float, value))
        if not math.isfinite(num):
            self.error(kp, "must be finite")
            return None
        if lo is not None and (num <= lo if lo_open else num < lo):
            self.error(kp, f"must be {'greater than' if lo_open else 'at least'} {lo:g}")
            return None
        if hi is not None and num > hi:
            self.error(kp, f"must be at most {hi:g}")
            return None
        return value

    def string(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: Any,
               choices: Iterable[str] | None = None) -> Any:
        value = tbl.get(key, _MISSING)
        kp = (*path, key)
        if value is _MISSING:
            if default is _MISSING:
                self.error(kp, "missing required key")
                return None
            return default
        if not isinstance(value, str):
            self.error(kp, f"expected a string, got {_type_name(value)}")
            return None
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                self.error(kp, f"must be one of {', '.join(choices)}; got {value!r}")
                return None
        return value

    def boolean(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: bool) -> bool:
        value = tbl.get(key, default)
        if not isinstance(value, bool):
            self.error((*path, key), f"expected a boolean, got {_type_name(value)}")
            return default
        return value

    def str_list(self, tbl: Mapping[str, Any], key: str, path: KeyPath) -> list[str] | None:
        """A list of strings; None when absent or broken (problems already recorded)."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return None
        kp = (*path, key)
        if not isinstance(value, list):
            self.error(kp, f"expected an array of strings, got {_type_name(value)}")
            return None
        out: list[str] = []
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error((*kp, i), f"expected a string, got {_type_name(item)}")
                ok = False
            else:
                out.append(item)
        return out if ok else None

    def path_value(self, tbl: Mapping[str, Any], key: str, path: KeyPath) -> Path | None:
        value = self.string(tbl, key, path, None)
        if not value:
            if value == "":
                self.error((*path, key), "must not be empty")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _cidr(v: _Validator, path: KeyPath, text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(text, strict=False)
            v.error(path, f"{text!r} has host bits set (did you mean {str(loose)!r}?)")
        else:
            v.error(path, f"invalid CIDR {text!r}")
        return None


def _name_ok(v: _Validator, path: KeyPath, name: str, what: str) -> bool:
    if _NAME_RE.match(name):
        return True
    v.error(path, f"invalid {what} name {name!r} (letters, digits, '_', '-', '.'; max 63)")
    return False


def as_number(value: object) -> int | None:
    """An AS number written as 13335, "13335" or "AS13335" (pool rules, fences);
    None when it is none (1 to 2**32 - 1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        m = _ASN_RE.match(value) if isinstance(value, str) else None
        number = int(m.group(1)) if m else 0
    return number if 1 <= number <= 2**32 - 1 else None
