"""Parser for ``[loads.NAME]``: the load feeds POPs name with ``load = "NAME"``."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from geodns.config.model import LOAD_FEED_TYPES, KeyPath, LoadFeed
from geodns.config.validator import _MISSING, _name_ok, _Validator

_COMMON: Final = ("type", "interval", "max_age")
_EXTRA: Final[dict[str, tuple[str, ...]]] = {
    "file": ("path", "format"),
    "http": ("url", "timeout"),
    "prometheus": ("url", "query", "label", "timeout"),
}
_DEFAULT_INTERVAL: Final = {"file": 1.0, "http": 10.0, "prometheus": 10.0}
_LABEL_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url(v: _Validator, path: KeyPath, text: str | None) -> str | None:
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        v.error((*path, "url"), f"expected an http:// or https:// URL, got {text!r}")
        return None
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        v.error((*path, "url"), f"bad port in {text!r}")
        return None
    return text


def _load_feed(v: _Validator, name: str, raw: object) -> LoadFeed | None:
    path: KeyPath = ("loads", name)
    tbl = v.table(raw, path)
    if tbl is None or not _name_ok(v, path, name, "load feed"):
        return None
    kind = v.string(tbl, "type", path, _MISSING, LOAD_FEED_TYPES)
    if kind is None:
        v.keys(tbl, path, _COMMON + tuple({k for e in _EXTRA.values() for k in e}))
        return None
    v.keys(tbl, path, _COMMON + _EXTRA[kind], f" for load feed type {kind!r}")
    d = LoadFeed(name=name, type=kind)
    interval = v.number(tbl, "interval", path, _DEFAULT_INTERVAL[kind], 0, 86400, lo_open=True)
    # default: a minute, and never fewer than three polls (two may be missed)
    default_age = max(d.max_age, 3 * interval) if interval is not None else d.max_age
    max_age = v.number(tbl, "max_age", path, default_age, 0, 10 * 86400, lo_open=True)
    if interval is not None and max_age is not None and max_age <= interval:
        v.error((*path, "max_age"), f"must be greater than interval ({interval:g}): "
                "otherwise data is stale before the next poll")
        max_age = None
    timeout = v.number(tbl, "timeout", path, d.timeout, 0, 3600, lo_open=True)
    if (kind != "file" and interval is not None and timeout is not None
            and timeout >= interval):
        v.error((*path, "timeout"), f"must be less than interval ({interval:g})")
        timeout = None
    ok = None not in (interval, max_age, timeout)
    feed_path = None
    fmt = d.format
    url: str | None = None
    query: str | None = None
    label: str | None = d.label
    if kind == "file":
        feed_path = v.path_value(tbl, "path", path)
        if feed_path is None and "path" not in tbl:
            v.error((*path, "path"), "missing required key")
        ok = ok and feed_path is not None
        guess = "csv" if feed_path is not None and feed_path.suffix.lower() == ".csv" \
            else "json"
        fmt = v.string(tbl, "format", path, guess, ("json", "csv"))
        ok = ok and fmt is not None
    else:
        url = _url(v, path, v.string(tbl, "url", path, _MISSING))
        ok = ok and url is not None
    if kind == "prometheus":
        query = v.string(tbl, "query", path, _MISSING)
        if query is not None and not query.strip():
            v.error((*path, "query"), "must not be empty")
            query = None
        label = v.string(tbl, "label", path, d.label)
        if label is not None and not _LABEL_RE.match(label):
            v.error((*path, "label"), f"not a Prometheus label name: {label!r}")
            label = None
        ok = ok and query is not None and label is not None
    if not ok:
        return None
    return LoadFeed(name=name, type=kind, path=feed_path, format=fmt or d.format, url=url,
                    query=query, label=label or d.label, interval=float(interval),
                    timeout=float(timeout), max_age=float(max_age))
