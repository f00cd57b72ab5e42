"""Log set-up for `geodns serve`: text for people, JSON lines for log pipelines.

Events an operator alerts on (health state changes, reloads, control writes, start
and stop) carry an ``event`` name and typed fields through the standard ``extra``
mechanism (:func:`event`), so the JSON form has stable keys while the text form
keeps the familiar one-line messages.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "event", "setup_logging"]

LEVELS: Final = ("debug", "info", "warning", "error", "critical")
FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS_ATTR: Final = "geodns_fields"


def event(name: str, **fields: Any) -> dict[str, Any]:
    """``extra=`` for a structured log line: ``log.info(..., extra=event("reload", ok=1))``."""
    return {_FIELDS_ATTR: {"event": name, **fields}}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, msg, then the event's fields.

    ``event`` is ``"log"`` for lines that are not structured events; an exception adds
    ``exc`` (the formatted traceback) so a line never spans several lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": "log",
            "msg": record.getMessage(),
        }
        fields = getattr(record, _FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in ("time", "level", "logger", "msg"):
                    out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class _Tagged(logging.Filter):
    """Names the process in every line (``geodns[worker 2]``): workers share a journal."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.endswith("]"):
            record.name = f"{record.name}[{self.tag}]"
        return True


def setup_logging(level: str = "info", fmt: str = "text",
                  stream: TextIO | None = None, process: str | None = None) -> None:
    """Configure the root logger once; ``level``/``fmt`` were validated by argparse;
    ``process`` tags the lines of a worker or prober process."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    if process:
        handler.addFilter(_Tagged(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
