"""Files in the transfer state directory: names per zone, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import dns.name


def file_stem(origin: dns.name.Name) -> str:
    """A file name for a zone: ``example.com`` (``root`` for the root zone)."""
    text = origin.to_text(omit_final_dot=True).lower() or "root"
    return text.replace("/", "%2F").lstrip(".") or "root"


def write_atomic(path: Path, text: str) -> None:
    """Write, flush to disk, then rename over ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
