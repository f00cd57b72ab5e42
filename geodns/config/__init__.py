"""geodns.toml: parse, validate and expose the server and POP-selection config.

Every problem is reported at once, each as ``FILE:LINE: key.path: problem`` so an
operator can fix a whole config in one edit cycle.  Unknown keys are errors: a
typo must never silently fall back to a default.  This package re-exports the
public names so callers import from ``geodns.config`` only.
"""

from geodns.config.load import load_config, parse_config
from geodns.config.locator import TomlLocator
from geodns.config.model import (
    ALL_DOWN_POLICIES,
    CHECK_TYPES,
    CONTINENTS,
    FALLBACK_STRATEGIES,
    LOAD_FEED_TYPES,
    MAX_TTL,
    STRATEGIES,
    AdminConfig,
    Check,
    Config,
    ConfigError,
    CookiesConfig,
    DnstapConfig,
    ExplainConfig,
    GeoIPConfig,
    HostPort,
    IPNetwork,
    KeyPath,
    LoadFeed,
    Margin,
    Pool,
    Pop,
    QueryLogConfig,
    RRLConfig,
    SecondaryZone,
    ServerConfig,
    TransferConfig,
    TsigKey,
    default_geoip_database,
    parse_hostport,
)
from geodns.config.validator import format_path

__all__ = [
    "ALL_DOWN_POLICIES",
    "CHECK_TYPES",
    "CONTINENTS",
    "FALLBACK_STRATEGIES",
    "LOAD_FEED_TYPES",
    "MAX_TTL",
    "STRATEGIES",
    "AdminConfig",
    "Check",
    "Config",
    "ConfigError",
    "CookiesConfig",
    "DnstapConfig",
    "ExplainConfig",
    "GeoIPConfig",
    "HostPort",
    "IPNetwork",
    "KeyPath",
    "LoadFeed",
    "Margin",
    "Pool",
    "Pop",
    "QueryLogConfig",
    "RRLConfig",
    "SecondaryZone",
    "ServerConfig",
    "TomlLocator",
    "TransferConfig",
    "TsigKey",
    "default_geoip_database",
    "format_path",
    "load_config",
    "parse_config",
    "parse_hostport",
]
