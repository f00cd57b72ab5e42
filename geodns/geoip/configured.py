"""Opening the configured GeoIP database: one place for the server, `check` and
`simulate`, so all three word a bad database the same way (``FILE:LINE: geoip.database:
cannot open PATH: ...``)."""

from __future__ import annotations

from geodns.config import Config, ConfigError
from geodns.config.locator import TomlLocator
from geodns.geoip.db import GeoDB

__all__ = ["geoip_problems", "open_configured"]


def open_configured(config: Config) -> GeoDB:
    """Open ``geoip.database``; ConfigError (with its file:line) when it cannot be."""
    path = config.geoip.database
    try:
        return GeoDB.open(path)
    except Exception as exc:  # maxminddb raises InvalidDatabaseError, OSError, ValueError
        raise ConfigError([f"{_where(config)}: geoip.database: cannot open {path}: "
                           f"{exc}"]) from None


def geoip_problems(config: Config) -> list[str]:
    """For `check`: the GeoIP database must open when some pool needs it."""
    if not config.pools:
        return []
    try:
        open_configured(config).close()
    except ConfigError as exc:
        return exc.problems
    return []


def _where(config: Config) -> str:
    """`file:line` of `geoip.database` (or its table) in the config file."""
    source = config.source
    if source is None:
        return "<default config>:0"
    try:
        text = source.read_text()
    except OSError:
        return f"{source}:0"
    return f"{source}:{TomlLocator(text).line(('geoip', 'database'))}"
