"""What is compiled from a config: the GeoIP database and the selector's steering maps.

A Runtime is part of a :class:`~geodns.generation.Generation`; a reload that leaves
the config and the files it reads alone keeps the old one (compiling takes seconds).
Health is not in it: the selector is handed the published snapshot per decision.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from geodns.config import Config
from geodns.geoip.configured import geoip_problems as geoip_problems
from geodns.geoip.configured import open_configured as open_geoip
from geodns.geoip.db import GeoDB
from geodns.select.selector import Selector
from geodns.traffic.steering import Steering
from geodns.zones.store import ZoneStore

log = logging.getLogger("geodns")

# [refactor hook] opening the configured GeoIP database lives in
# geodns/geoip/configured.py (shared with simulate); open_geoip and geoip_problems stay
# importable from here.


class Runtime:
    """An immutable pairing of config, GeoIP database and the selector built on them.

    ``inputs_key``: the identity of the files besides the config it was compiled from
    (the ASN database); a reload compares it to decide whether to compile again."""

    __slots__ = ("config", "geo", "inputs_key", "selector")

    def __init__(self, config: Config, geo: GeoDB | None, steering: Steering | None = None,
                 inputs_key: object = None) -> None:
        self.config = config
        self.geo = geo
        self.inputs_key = inputs_key
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
    def load(cls, config: Config, geo: GeoDB | None = None, steering: Steering | None = None,
             inputs_key: object = None) -> Runtime:
        """Open the GeoIP database only when some pool needs it (and reuse an open one)."""
        if geo is None and config.pools:
            geo = open_geoip(config)
        return cls(config, geo, steering, inputs_key)

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
