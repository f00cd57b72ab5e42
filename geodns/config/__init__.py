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
    MAX_TTL,
    STRATEGIES,
    AdminConfig,
    Check,
    Config,
    ConfigError,
    CookiesConfig,
    ExplainConfig,
    GeoIPConfig,
    HostPort,
    IPNetwork,
    KeyPath,
    Pool,
    Pop,
    QueryLogConfig,
    RRLConfig,
    ServerConfig,
    default_geoip_database,
    parse_hostport,
)
from geodns.config.validator import format_path

__all__ = [
    "ALL_DOWN_POLICIES",
    "CHECK_TYPES",
    "CONTINENTS",
    "MAX_TTL",
    "STRATEGIES",
    "AdminConfig",
    "Check",
    "Config",
    "ConfigError",
    "CookiesConfig",
    "ExplainConfig",
    "GeoIPConfig",
    "HostPort",
    "IPNetwork",
    "KeyPath",
    "Pool",
    "Pop",
    "QueryLogConfig",
    "RRLConfig",
    "ServerConfig",
    "TomlLocator",
    "default_geoip_database",
    "format_path",
    "load_config",
    "parse_config",
    "parse_hostport",
]
