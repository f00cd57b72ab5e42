"""The result of one POP selection, shaped for the answer path and its caches."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Kind", "Selection"]

Kind = Literal["addresses", "cname", "nodata", "servfail"]


@dataclass(frozen=True, slots=True)
class Selection:
    """What to answer for one (pool, qtype, client).

    ``key`` is ``(kind, addresses, cname, ttl)``: equal keys mean byte-identical answer
    records, so the answer path can cache rendered RRsets by it.  ``scope`` is the ECS
    scope prefix length: every address in ``client/scope`` gets an equal ``key``.
    """

    kind: Kind
    addresses: tuple[str, ...]  # kind == "addresses": in answer order
    cname: str | None  # kind == "cname": absolute, trailing dot
    ttl: int
    scope: int  # ECS scope prefix length (0: same answer for every client of the family)
    pops: tuple[str, ...]  # chosen POPs, for metrics and logs
    key: Hashable
    arm: str | None = None  # the experiment arm that answered
    fence: str | None = None  # the fences that cut the candidates ("us-only", "a+b")

    @classmethod
    def make(cls, kind: Kind, addresses: tuple[str, ...], cname: str | None, ttl: int,
             scope: int, pops: tuple[str, ...]) -> Selection:
        """Build with the canonical key."""
        return cls(kind, addresses, cname, ttl, scope, pops, (kind, addresses, cname, ttl))

    def with_scope(self, scope: int) -> Selection:
        """Same answer, another scope (the key does not include the scope)."""
        if scope == self.scope:
            return self
        return Selection(self.kind, self.addresses, self.cname, self.ttl, scope, self.pops,
                         self.key, self.arm, self.fence)
