"""Where a client is, as far as steering cares: the few GeoIP fields rules read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["EARTH_RADIUS_KM", "Location", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km: the "nearest POP" metric."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Location:
    """The parts of a GeoIP record that selection and explain use (hashable: a cache key)."""

    continent: str | None = None
    country: str | None = None
    subdivisions: tuple[str, ...] = ()  # ISO 3166-2 "XX-YYY", largest first, as in mmdb
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_km: int | None = None

    @property
    def has_coords(self) -> bool:
        return self.lat is not None and self.lon is not None

    @classmethod
    def from_record(cls, record: Any) -> Location | None:
        """Extract from a GeoIP2 City/Country record; None when it holds nothing usable."""
        if not isinstance(record, dict):
            return None
        continent = _get(record, "continent", "code")
        country = _get(record, "country", "iso_code") or _get(
            record, "registered_country", "iso_code")
        subs: tuple[str, ...] = ()
        raw_subs = record.get("subdivisions")
        if country and isinstance(raw_subs, list):
            subs = tuple(
                f"{country}-{s['iso_code']}".upper()
                for s in raw_subs
                if isinstance(s, dict) and isinstance(s.get("iso_code"), str)
            )
        loc = record.get("location")
        lat = lon = None
        acc = None
        if isinstance(loc, dict):
            la, lo = loc.get("latitude"), loc.get("longitude")
            if isinstance(la, int | float) and isinstance(lo, int | float):
                lat, lon = float(la), float(lo)
            a = loc.get("accuracy_radius")
            acc = a if isinstance(a, int) else None
        city = None
        names = _get(record, "city", "names")
        if isinstance(names, dict):
            en = names.get("en")
            city = en if isinstance(en, str) else None
        if not (continent or country or lat is not None):
            return None
        return cls(
            continent=continent.upper() if isinstance(continent, str) else None,
            country=country.upper() if isinstance(country, str) else None,
            subdivisions=subs, city=city, lat=lat, lon=lon, accuracy_km=acc,
        )

    def describe(self) -> str:
        """Short human text for explain output (ASCII codes, English city name)."""
        parts = []
        if self.continent:
            parts.append(f"continent={self.continent}")
        if self.country:
            parts.append(f"country={self.country}")
        if self.subdivisions:
            parts.append(f"subdivision={','.join(self.subdivisions)}")
        if self.city:
            parts.append(f"city={self.city}")
        if self.has_coords:
            parts.append(f"loc={self.lat:.4f},{self.lon:.4f}")
        if self.accuracy_km is not None:
            parts.append(f"radius={self.accuracy_km}km")
        return " ".join(parts) or "unknown"


def _get(record: dict[str, Any], outer: str, inner: str) -> Any:
    sub = record.get(outer)
    return sub.get(inner) if isinstance(sub, dict) else None
