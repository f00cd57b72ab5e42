"""In-memory zones for the transfer unit tests."""

from __future__ import annotations

from geodns.zones.store import ZoneStore, build_store
from geodns.zones.zone import Zone

ORIGIN = "unit.test."


def text(serial: int, body: str = "www IN A 192.0.2.10\n", *, expire: int = 600) -> str:
    return (f"$ORIGIN {ORIGIN}\n$TTL 60\n@ IN SOA ns1 hm {serial} 3600 600 {expire} 300\n"
            f"  IN NS ns1\nns1 IN A 192.0.2.1\n{body}")


def store(serial: int, body: str = "www IN A 192.0.2.10\n", **kw: int) -> ZoneStore:
    return build_store({"/zones/unit.test.zone": text(serial, body, **kw)})


def one(serial: int, body: str = "www IN A 192.0.2.10\n", **kw: int) -> Zone:
    return next(iter(store(serial, body, **kw).zones.values()))
