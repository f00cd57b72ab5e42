"""What a selector needs besides the config and the GeoIP database: the ASN database's
networks (``asn.NNNN`` rules), the latency maps (``latency`` pools) and the published
spill state (``spill`` pools).

The server keeps these across reloads (:mod:`geodns.traffic.steering`); tools that run
once (``explain``, ``simulate``, ``check``) read them from the files the config names
with :func:`load_inputs`.  Either way a file with problems is reported as
``file:line: problem`` (:class:`~geodns.problems.Problems`), never half used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geodns.config import Config
from geodns.geoip.asn import AsnDB
from geodns.geoip.asn_tables import AsnTables, asn_tables
from geodns.problems import Problems
from geodns.select.latency import LatencyBook
from geodns.select.spill import SpillHolder
from geodns.traffic.latency_map import load_latency_map

__all__ = ["Inputs", "check_steering", "load_asn", "load_books", "load_inputs",
           "needs_asn"]


@dataclass
class Inputs:
    """Steering data for one selector (everything optional)."""

    asn: AsnTables | None = None
    latency: Mapping[str, LatencyBook] = field(default_factory=dict)  # pool -> book
    spill: SpillHolder | None = None


def needs_asn(config: Config) -> Path | None:
    """The ASN database when some pool has ``asn.NNNN`` rules or some fence ``asn``."""
    if any(pool.asn for pool in config.pools.values()) or any(
            fence.asn for fence in config.fences.values()):
        return config.geoip.asn_database
    return None


def load_asn(config: Config) -> AsnTables | None:
    """The ASN tables the config's rules need (Problems when the file is unusable)."""
    path = needs_asn(config)
    if path is None:
        return None
    AsnDB.open(path).close()  # located problems for a missing or wrong file
    try:
        return asn_tables(path)
    except (OSError, ValueError) as exc:
        raise Problems([f"{path}:0: cannot read as an ASN database: {exc}"]) from None


def load_books(config: Config, previous: Mapping[str, LatencyBook] | None = None
               ) -> dict[str, LatencyBook]:
    """A book per latency pool: ``previous``'s when it reads the same file (its map
    and incumbents are kept current by whoever owns them), else read now.  A pool
    whose file moved keeps its incumbents."""
    books: dict[str, LatencyBook] = {}
    problems: list[str] = []
    for name, pool in config.pools.items():
        if pool.strategy != "latency" or pool.map is None:
            continue
        path = str(pool.map)
        prev = (previous or {}).get(name)
        if prev is not None and prev.path == path and prev.map is not None:
            books[name] = prev
            continue
        try:
            lmap = load_latency_map(path, frozenset(config.pops))
        except Problems as exc:
            problems += exc.problems
            continue
        books[name] = LatencyBook(path, lmap, dict(prev.incumbents) if prev else {})
    if problems:
        raise Problems(list(dict.fromkeys(problems)))
    return books


def load_inputs(config: Config, spill: SpillHolder | None = None) -> Inputs:
    """Read what ``config`` refers to (ASN database, latency maps) from disk; spill
    pools read ``spill`` (default: a holder with nothing shed, for tools to fill)."""
    return Inputs(load_asn(config), load_books(config), spill or SpillHolder())


def check_steering(config: Config, now: float) -> tuple[list[str], list[str]]:
    """``geodns check``: (problems, one line per latency map): the maps the config names
    load (every file:line problem), and how big and old each is."""
    try:
        books = load_books(config)
    except Problems as exc:
        return exc.problems, []
    lines = []
    for name, book in books.items():
        pool = config.pools[name]
        assert book.map is not None
        age = book.map.age(now) or 0.0
        rows = sum(len(ms) for _, ms in book.map)
        state = "older than max_age: the fallback answers" if age > pool.max_age else "fresh"
        lines.append(f"latency map {book.path} (pool {name}): {len(book.map)} prefixes, "
                     f"{rows} rows, {age / 3600:.1f} h old ({state})")
    return [], lines
