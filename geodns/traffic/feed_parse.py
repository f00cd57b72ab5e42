"""Load feed payloads -> ``key -> load``: JSON and CSV documents, Prometheus responses.

A payload is used whole or not at all: any problem raises :class:`FeedError` with every
problem as ``source:line: problem`` (``source`` is the file path or the URL), and the
monitor keeps the previous values.

JSON, either flat or with the time the loads were measured::

    {"fra": 812.5, "iad": 1203}
    {"timestamp": "2026-01-31T12:00:00Z", "loads": {"fra": 812.5, "iad": 1203}}

CSV, one POP per line, the time optional (Unix seconds or ISO 8601 with a zone)::

    pop,load,time
    fra,812.5,1767225600
    iad,1203

Prometheus: the JSON of ``/api/v1/query`` for an instant vector, one sample per
value of the POP label (``sum by (pop) (...)``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from geodns.problems import Problems

__all__ = [
    "FeedData",
    "FeedError",
    "parse_csv_loads",
    "parse_json_loads",
    "parse_prometheus",
    "parse_time",
]

_WRAPPED_KEYS: Final = frozenset({"timestamp", "loads"})
_CSV_HEADER: Final = ("pop", "load")


class FeedError(Problems):
    """A feed's payload or fetch is unusable (every ``source:line: problem``)."""


@dataclass(frozen=True, slots=True)
class FeedData:
    """Loads by feed key, with the time they were measured when the payload says so."""

    values: Mapping[str, float]
    timestamp: float | None = None  # the whole payload's time
    timestamps: Mapping[str, float] = field(default_factory=dict)  # per key (CSV, Prometheus)

    def time_of(self, key: str, default: float) -> float:
        """When ``key``'s value was measured (``default``: when it was read)."""
        return self.timestamps.get(key, self.timestamp if self.timestamp is not None
                                   else default)


def parse_time(value: object) -> float:
    """Unix seconds (number or numeric string) or ISO 8601 with a zone -> Unix seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a time, got a boolean")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            ts = float(value)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{value!r} is not a Unix time or ISO 8601 time") from None
            if when.tzinfo is None:
                raise ValueError(f"{value!r} has no time zone (e.g. 2026-01-31T12:00:00Z)"
                                 ) from None
            ts = when.timestamp()
    else:
        raise ValueError(f"expected a time, got {type(value).__name__}")
    if not math.isfinite(ts) or ts < 0:
        raise ValueError(f"{value!r} is not a Unix time")
    return ts


def _load_value(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    try:
        num = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(num) or num < 0:
        raise ValueError(f"{value!r} must be a finite number >= 0")
    return num


def _key_line(text: str, key: str) -> int:
    """Line of ``"key":`` in a JSON text (1 when not found): for located problems."""
    m = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def parse_json_loads(text: str, source: str) -> FeedData:
    """A JSON document, flat or ``{"timestamp": T, "loads": {...}}``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedError([f"{source}:{exc.lineno}: invalid JSON: {exc.msg}"]) from None
    if not isinstance(doc, dict):
        raise FeedError([f"{source}:1: expected a JSON object of POP loads, got "
                         f"{type(doc).__name__}"])
    problems: list[str] = []
    timestamp: float | None = None
    loads: Any = doc
    if "loads" in doc:
        for key in doc:
            if key not in _WRAPPED_KEYS:
                problems.append(f"{source}:{_key_line(text, key)}: unknown key {key!r} "
                                "beside \"loads\" (only \"timestamp\" may be there)")
        loads = doc["loads"]
        if not isinstance(loads, dict):
            problems.append(f"{source}:{_key_line(text, 'loads')}: \"loads\" must be an "
                            "object of POP loads")
            loads = {}
        if "timestamp" in doc:
            try:
                timestamp = parse_time(doc["timestamp"])
            except ValueError as exc:
                problems.append(f"{source}:{_key_line(text, 'timestamp')}: timestamp: {exc}")
    values: dict[str, float] = {}
    for key, raw in loads.items():
        try:
            values[key] = _load_value(raw)
        except ValueError as exc:
            problems.append(f"{source}:{_key_line(text, key)}: {key}: {exc}")
    if not values and not problems:
        problems.append(f"{source}:1: no loads in the document")
    if problems:
        raise FeedError(problems)
    return FeedData(values, timestamp)


def parse_csv_loads(text: str, source: str) -> FeedData:
    """``pop,load[,time]`` lines; optional header; ``#`` comments."""
    problems: list[str] = []
    values: dict[str, float] = {}
    times: dict[str, float] = {}
    first_at: dict[str, int] = {}
    first = True
    rows = csv.reader(io.StringIO(text))
    for raw in rows:
        lineno = rows.line_num
        cells = [c.strip() for c in raw]
        if not cells or cells == [""] or cells[0].startswith("#"):
            continue
        if first and tuple(c.lower() for c in cells[:2]) == _CSV_HEADER:
            first = False
            continue
        first = False
        if len(cells) not in (2, 3):
            problems.append(f"{source}:{lineno}: expected 2 or 3 fields (pop,load[,time]), "
                            f"got {len(cells)}")
            continue
        key = cells[0]
        if not key:
            problems.append(f"{source}:{lineno}: empty POP name")
            continue
        if key in first_at:
            problems.append(f"{source}:{lineno}: duplicate POP {key!r} (first at line "
                            f"{first_at[key]})")
            continue
        first_at[key] = lineno
        try:
            values[key] = _load_value(cells[1])
            if len(cells) == 3 and cells[2]:
                times[key] = parse_time(cells[2])
        except ValueError as exc:
            problems.append(f"{source}:{lineno}: {key}: {exc}")
    if not values and not problems:
        problems.append(f"{source}:0: no loads in the file")
    if problems:
        raise FeedError(problems)
    return FeedData(values, None, times)


def parse_prometheus(doc: object, label: str, source: str) -> FeedData:
    """The JSON of a Prometheus instant query: one sample per value of ``label``."""
    if not isinstance(doc, dict):
        raise FeedError([f"{source}:1: not a Prometheus API response"])
    if doc.get("status") != "success":
        error = doc.get("error") or "no error message"
        kind = doc.get("errorType")
        raise FeedError([f"{source}:1: Prometheus query failed: "
                         f"{f'{kind}: ' if kind else ''}{error}"])
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise FeedError([f"{source}:1: not a Prometheus API response (no data.result)"])
    if data.get("resultType") != "vector":
        raise FeedError([f"{source}:1: the query returned a {data.get('resultType')}, "
                         "not an instant vector (one sample per POP)"])
    problems: list[str] = []
    values: dict[str, float] = {}
    times: dict[str, float] = {}
    for i, sample in enumerate(data["result"]):
        metric = sample.get("metric") if isinstance(sample, dict) else None
        value = sample.get("value") if isinstance(sample, dict) else None
        if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
            problems.append(f"{source}:1: result[{i}]: not a vector sample")
            continue
        key = metric.get(label)
        if not isinstance(key, str) or not key:
            shown = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
            problems.append(f"{source}:1: result[{i}] {shown} has no {label!r} label "
                            f"(aggregate with: sum by ({label}) (...))")
            continue
        if key in values:
            problems.append(f"{source}:1: two samples for {label}={key!r} (aggregate with: "
                            f"sum by ({label}) (...))")
            continue
        try:
            values[key] = _load_value(value[1])
            times[key] = parse_time(value[0])
        except ValueError as exc:
            problems.append(f"{source}:1: {label}={key}: {exc}")
    if not values and not problems:
        problems.append(f"{source}:1: the query returned no samples")
    if problems:
        raise FeedError(problems)
    return FeedData(values, None, times)
