"""Compatibility imports: GeoIP code lives in :mod:`geodns.geoip`."""

from geodns.geoip.db import GeoDB
from geodns.geoip.location import EARTH_RADIUS_KM, Location, haversine_km
from geodns.watch import FileKey, file_key

__all__ = ["EARTH_RADIUS_KM", "FileKey", "GeoDB", "Location", "file_key", "haversine_km"]
