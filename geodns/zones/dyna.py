"""The DYNA record: a zone-file marker saying "this name is answered by a pool".

It is registered with dnspython as a private-use type so zone files with steered
names stay ordinary master files that parse, check, reload and transfer like any other.
"""

from __future__ import annotations

import contextlib
from typing import Any

import dns.exception
import dns.immutable
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer

DYNA_TYPE = 65280  # first private-use RR type (RFC 6895)
_POOL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dns.immutable.immutable
class DYNA(dns.rdata.Rdata):
    """Names the pool that answers for this owner."""

    __slots__ = ["pool"]

    def __init__(self, rdclass: Any, rdtype: Any, pool: str) -> None:
        super().__init__(rdclass, rdtype)
        if not pool or len(pool) > 255 or not set(pool) <= _POOL_CHARS:
            raise dns.exception.SyntaxError(f"bad DYNA pool name {pool!r}")
        self.pool = pool

    def to_text(self, origin: Any = None, relativize: bool = True, style: Any = None,
                **kw: Any) -> str:
        return self.pool

    def to_styled_text(self, style: Any) -> str:
        return self.pool

    @classmethod
    def from_text(
        cls,
        rdclass: Any,
        rdtype: Any,
        tok: dns.tokenizer.Tokenizer,
        origin: Any = None,
        relativize: bool = True,
        relativize_to: Any = None,
    ) -> DYNA:
        pool = tok.get_string()
        return cls(rdclass, rdtype, pool)

    def _to_wire(self, file: Any, compress: Any = None, origin: Any = None,
                 canonicalize: bool = False) -> None:
        raw = self.pool.encode()
        file.write(bytes([len(raw)]) + raw)

    @classmethod
    def from_wire_parser(cls, rdclass: Any, rdtype: Any, parser: Any, origin: Any = None) -> DYNA:
        return cls(rdclass, rdtype, parser.get_counted_bytes().decode())


def register() -> None:
    """Register DYNA once; safe to call repeatedly."""
    if dns.rdata.get_rdata_class(dns.rdataclass.IN, DYNA_TYPE) is not DYNA:
        with contextlib.suppress(dns.rdata.RdatatypeExists):
            # Mnemonic first: dnspython names the enum value it mints for the type
            # from the registry, and would otherwise print it as TYPE65280.
            dns.rdatatype.register_type(DYNA_TYPE, "DYNA", True)  # type: ignore[arg-type]
            dns.rdata.register_type(DYNA, DYNA_TYPE, "DYNA", is_singleton=True)


register()
