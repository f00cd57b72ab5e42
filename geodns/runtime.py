"""What the answer path needs besides zones: config, GeoIP database, selector, health.

A config (or GeoIP database) reload builds a new Runtime and swaps it in whole; the
health snapshot is a separate reference because it changes far more often.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from geodns.config import Config, ConfigError
from geodns.config.locator import TomlLocator
from geodns.geo import GeoDB
from geodns.health.snapshot import HealthSnapshot
from geodns.select.selector import Selector
from geodns.select.types import Selection
from geodns.traffic.steering import Steering
from geodns.zones.store import ZoneStore

log = logging.getLogger("geodns")


class HealthHolder:
    """The one published health snapshot; replaced by the monitor, read per query."""

    def __init__(self, snapshot: HealthSnapshot | None = None) -> None:
        self.snapshot = snapshot or HealthSnapshot.all_up()


class Runtime:
    """An immutable pairing of config, GeoIP database and the selector built on them."""

    def __init__(self, config: Config, geo: GeoDB | None, health: HealthHolder,
                 steering: Steering | None = None) -> None:
        self.config = config
        self.geo = geo
        self.health = health
        self.inputs_key: object = None  # the input files' identity (see Server._new_runtime)
        started = time.monotonic()
        # [traffic hook] the selector reads ASN networks, latency maps and spill shares
        # the server's steering keeps (geodns/traffic/steering.py); None: from files
        self.selector = Selector(config, geo, inputs=steering.inputs(config)
                                 if steering is not None else None)
        compiled = [p for p in self.selector.plans.values() if p.maps]
        if compiled:
            tables = self.selector.tables
            log.info("steering maps compiled in %.1f s for %d pools (%s); GeoIP networks %s",
                     time.monotonic() - started, len(compiled),
                     ", ".join(f"{p.name}: {len(p.maps[4])} + {len(p.maps[6])} intervals"
                               for p in compiled),
                     "from the cache" if tables is not None and tables.from_cache else
                     f"read in {tables.build_seconds:.1f} s" if tables is not None else "-")

    @classmethod
    def load(cls, config: Config, health: HealthHolder | None = None,
             geo: GeoDB | None = None, steering: Steering | None = None) -> Runtime:
        """Open the GeoIP database only when some pool needs it (and reuse an open one)."""
        if geo is None and config.pools:
            geo = open_geoip(config)
        return cls(config, geo, health or HealthHolder(), steering)

    def select(self, pool: str, qtype: int, client: str | bytes,
               source_prefix: int | None) -> Selection:
        return self.selector.select(pool, qtype, client, source_prefix, self.health.snapshot)

    def explain_lines(self, pool: str, qtype: int, client: str | bytes,
                      source_prefix: int | None) -> list[str]:
        return self.selector.explain(pool, qtype, client, source_prefix,
                                     self.health.snapshot).lines()

    def geo_path(self) -> Path | None:
        return self.geo.path if self.geo is not None else None


def cross_check(store: ZoneStore, config: Config) -> list[str]:
    """Problems that need both zones and config: DYNA records naming unknown pools."""
    problems = []
    for zone in store.zones.values():
        for owner, pool, file, line in zone.dyna_records():
            if pool not in config.pools:
                known = ", ".join(sorted(config.pools)) or "none configured"
                problems.append(f"{file}:{line}: DYNA at {owner} names unknown pool "
                                f"{pool!r} (pools: {known})")
    return problems


def open_geoip(config: Config) -> GeoDB:
    """Open the configured database; ConfigError (with its file:line) when it cannot be."""
    path = config.geoip.database
    try:
        return GeoDB.open(path)
    except Exception as exc:  # maxminddb raises InvalidDatabaseError, OSError, ValueError
        raise ConfigError([f"{_geoip_where(config)}: geoip.database: cannot open {path}: "
                           f"{exc}"]) from None


def geoip_problems(config: Config) -> list[str]:
    """For `check`: the GeoIP database must open when some pool needs it."""
    if not config.pools:
        return []
    try:
        open_geoip(config).close()
    except ConfigError as exc:
        return exc.problems
    return []


def _geoip_where(config: Config) -> str:
    """`file:line` of `geoip.database` (or its table) in the config file."""
    source = config.source
    if source is None:
        return "<default config>:0"
    try:
        text = source.read_text()
    except OSError:
        return f"{source}:0"
    return f"{source}:{TomlLocator(text).line(('geoip', 'database'))}"
