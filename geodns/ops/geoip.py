"""Which GeoIP database is in use, how old it is, and what it says about one client.

An old database silently steers clients by where their networks were years ago, so
the type and build date are logged at start and on every change, exposed on
``/status`` and in ``geodns_geoip_build_timestamp_seconds``, printed by ``check``,
and a warning is logged when the build is older than ``[geoip] max_age_days``.
``geoip2`` (MaxMind's reader API) reads the metadata for ``check`` and turns a raw
record into its documented model for ``explain``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import geoip2.database
import geoip2.errors

from geodns.logs import event

__all__ = ["GeoDatabase", "GeoInfo", "describe_record", "geo_info", "log_geo_info", "read_info"]

log = logging.getLogger("geodns.geoip")
DAY = 86400.0


class GeoDatabase(Protocol):
    """What is read of an open GeoIP database (:class:`geodns.geoip.db.GeoDB`)."""

    @property
    def path(self) -> Path: ...

    @property
    def database_type(self) -> str: ...

    @property
    def build_epoch(self) -> int: ...


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """A database's identity and age (``max_age_days`` 0: never stale)."""

    path: str
    type: str
    build_epoch: int
    max_age_days: int
    description: str | None = None

    def built(self) -> str:
        return datetime.fromtimestamp(self.build_epoch, UTC).strftime("%Y-%m-%d")

    def age_days(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return max(0, int((now - self.build_epoch) // DAY))

    def stale(self, now: float | None = None) -> bool:
        return self.max_age_days > 0 and self.age_days(now) > self.max_age_days

    def describe(self, now: float | None = None) -> str:
        """``GeoLite2-City built 2018-07-03 (2701 days ago), /path/GeoLite2-City.mmdb``"""
        return (f"{self.type} built {self.built()} ({self.age_days(now)} days ago), "
                f"{self.path}")

    def warning(self, now: float | None = None) -> str | None:
        """The stale-database warning, or None when the build is recent enough."""
        if not self.stale(now):
            return None
        return (f"GeoIP database {self.path} is {self.age_days(now)} days old (built "
                f"{self.built()}; [geoip] max_age_days = {self.max_age_days}): clients are "
                "steered by where their networks were then. Install a current GeoLite2/"
                "GeoIP2 City or DB-IP mmdb and keep it updated (README: GeoIP data)")

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "build_epoch": self.build_epoch,
                "built": self.built(), "age_days": self.age_days(now),
                "max_age_days": self.max_age_days, "stale": self.stale(now)}


def geo_info(db: GeoDatabase, max_age_days: int) -> GeoInfo:
    """From an open :class:`geodns.geoip.db.GeoDB` (its metadata was read when it opened)."""
    return GeoInfo(str(db.path), db.database_type, db.build_epoch, max_age_days)


def read_info(path: str | Path, max_age_days: int) -> GeoInfo:
    """Open ``path`` with geoip2 just for its metadata (``check``); raises on a bad file."""
    with geoip2.database.Reader(str(path)) as reader:
        meta = reader.metadata()
        desc = meta.description.get("en") if isinstance(meta.description, dict) else None
        return GeoInfo(str(path), str(meta.database_type), int(meta.build_epoch),
                       max_age_days, desc)


def log_geo_info(info: GeoInfo) -> None:
    """One info line per database opened, and a warning when it is too old."""
    log.info("geoip: %s", info.describe(),
             extra=event("geoip", **info.as_dict()))
    warning = info.warning()
    if warning:
        log.warning("%s", warning, extra=event("geoip_stale", **info.as_dict()))


def _names(record: Any) -> str | None:
    name = getattr(record, "name", None)
    return str(name) if name else None


def describe_record(path: str | Path, client: str) -> list[str]:
    """The client's full GeoIP record in words (``explain``), via geoip2's models."""
    address = str(ipaddress.ip_network(client, strict=False).network_address)
    try:
        with geoip2.database.Reader(str(path)) as reader:
            dbtype = reader.metadata().database_type
            try:
                model: Any = reader.city(address) if "City" in dbtype else \
                    reader.country(address)
            except TypeError:  # not a City/Country database (ASN, ...): nothing to say
                return [f"record: {dbtype} has no location records"]
    except geoip2.errors.AddressNotFoundError:
        return [f"record: {address} is not in the GeoIP database"]
    except (OSError, ValueError) as exc:
        return [f"record: cannot read the GeoIP database: {exc}"]
    parts: list[str] = []
    city = getattr(model, "city", None)
    if city is not None and _names(city):
        parts.append(str(_names(city)))
    for sub in getattr(model, "subdivisions", ()) or ():
        if _names(sub):
            parts.append(f"{_names(sub)} ({sub.iso_code})")
    country = model.country
    if country.iso_code:
        parts.append(f"{_names(country) or country.iso_code} ({country.iso_code}, "
                     f"{model.continent.code})")
    lines = [f"record: {', '.join(parts) or 'no place names'}"]
    extra: list[str] = []
    postal = getattr(model, "postal", None)
    if postal is not None and postal.code:
        extra.append(f"postal {postal.code}")
    loc = getattr(model, "location", None)
    if loc is not None and loc.latitude is not None and loc.longitude is not None:
        radius = f" +-{loc.accuracy_radius} km" if loc.accuracy_radius else ""
        extra.append(f"location {loc.latitude},{loc.longitude}{radius}")
    if loc is not None and loc.time_zone:
        extra.append(f"time zone {loc.time_zone}")
    registered = model.registered_country.iso_code
    if registered and registered != country.iso_code:
        extra.append(f"registered in {registered}")
    extra.append(f"network {model.traits.network}")
    lines.append("        " + ", ".join(extra))
    return lines
