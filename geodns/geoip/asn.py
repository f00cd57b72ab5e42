"""Which network (autonomous system) a client is in, from a GeoLite2-ASN style mmdb.

Read through the ``geoip2`` package (``Reader.asn()`` / ``Reader.isp()`` and their
models), so the record layout is MaxMind's, not ours.  Used by ``geodns explain`` now
and meant for ``asn.NNNN`` pool rules: :meth:`AsnDB.networks` walks every network
for a compiled prefix map, :meth:`AsnDB.lookup` answers one address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import geoip2.database
import geoip2.errors
import maxminddb

from geodns.problems import Problems

__all__ = ["AsnDB", "AsnDatabaseError", "AsnInfo", "asn_database_problems", "explain_asn"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# database_type substrings geoip2 accepts for each reader method
_ASN_TYPE = "GeoLite2-ASN"
_ISP_TYPE = "GeoIP2-ISP"


class AsnDatabaseError(Problems):
    """The ASN database cannot be used (``PATH:0: problem``)."""


class AsnInfo(NamedTuple):
    """An address's autonomous system: number, organisation, and the database network
    it was found in (every address of ``network`` has the same ASN)."""

    asn: int | None
    org: str | None
    network: IPNetwork

    def describe(self) -> str:
        """``AS13335 Cloudflare, Inc. (1.1.1.0/24)``: how explain prints it."""
        number = f"AS{self.asn}" if self.asn is not None else "no ASN"
        return f"{number} {self.org or '-'} ({self.network})"


def _address(ip: str) -> str:
    """Normalise: no zone id, IPv4-mapped IPv6 as IPv4 (as the GeoIP lookups do)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class AsnDB:
    """An open ASN database; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, reader: geoip2.database.Reader, path: Path, database_type: str) -> None:
        self._reader = reader
        self.path = path
        self.database_type = database_type

    @classmethod
    def open(cls, path: str | Path) -> AsnDB:
        """Open ``path``; :class:`AsnDatabaseError` when it is missing, broken or not an
        ASN (or ISP) database, e.g. a City database given by mistake."""
        p = Path(path)
        try:
            reader = geoip2.database.Reader(str(p))
        except FileNotFoundError:
            raise AsnDatabaseError([f"{p}:0: no such file"]) from None
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise AsnDatabaseError(
                [f"{p}:0: cannot read as a MaxMind DB: {exc}"]) from None
        db_type = reader.metadata().database_type
        if _ASN_TYPE not in db_type and _ISP_TYPE not in db_type:
            reader.close()
            raise AsnDatabaseError([f"{p}:0: a {db_type} database, not an ASN database "
                                    f"(want {_ASN_TYPE} or {_ISP_TYPE})"])
        return cls(reader, p, db_type)

    def lookup(self, ip: str) -> AsnInfo | None:
        """The ASN of ``ip``, or None when the database has no record for it.

        ValueError when ``ip`` is not an address.
        """
        address = _address(ip)
        try:
            if _ASN_TYPE in self.database_type:
                rec: Any = self._reader.asn(address)
            else:
                rec = self._reader.isp(address)
        except geoip2.errors.AddressNotFoundError:
            return None
        return AsnInfo(rec.autonomous_system_number, rec.autonomous_system_organization,
                       rec.network)

    def networks(self) -> Iterator[tuple[IPNetwork, int | None]]:
        """Every network of the database with its ASN, in address order (for compiling
        ``asn.NNNN`` rules into a prefix map).  IPv4 networks of an IPv6 tree come as
        IPv4 networks."""
        with maxminddb.open_database(str(self.path)) as raw:
            for network, record in raw:
                asn = record.get("autonomous_system_number") if isinstance(record, dict) \
                    else None
                yield network, asn if isinstance(asn, int) else None

    def close(self) -> None:
        """Release the file (mmap)."""
        self._reader.close()

    def __enter__(self) -> AsnDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def asn_database_problems(path: Path | None) -> list[str]:
    """``geodns check``: the configured ASN database opens and is an ASN database."""
    if path is None:
        return []
    try:
        AsnDB.open(path).close()
    except AsnDatabaseError as exc:
        return exc.problems
    return []


def explain_asn(path: Path, ip: str) -> str:
    """One explain line: ``asn: AS13335 Cloudflare, Inc. (1.1.1.0/24)`` (or why not)."""
    try:
        with AsnDB.open(path) as db:
            info = db.lookup(ip)
    except AsnDatabaseError as exc:
        return f"asn: unavailable: {exc.problems[0]}"
    return f"asn: {info.describe()}" if info is not None else \
        f"asn: {ip} is not in {path.name}"
