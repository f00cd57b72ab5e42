"""Why a client got the answer it got: the data behind ``geodns explain`` and TXT explains.

Built by :meth:`geodns.select.selector.Selector.explain` from the same code path as
``select`` (uncached GeoIP lookup for display), so the explanation cannot drift from
the real decision.  :meth:`Explanation.lines` keeps every line under 255 bytes so
each fits one TXT character-string.
"""

from __future__ import annotations

from dataclasses import dataclass

from geodns.geoip.location import Location
from geodns.health.snapshot import State
from geodns.select.types import Selection

__all__ = ["MAX_LINE_BYTES", "AddressInfo", "CandidateInfo", "Explanation", "qtype_text"]

MAX_LINE_BYTES = 254  # a TXT character-string holds 255 bytes; keep one spare


def qtype_text(qtype: int) -> str:
    """``A``/``AAAA``/... without importing dnspython on the hot path."""
    names = {1: "A", 5: "CNAME", 28: "AAAA", 16: "TXT", 15: "MX", 255: "ANY", 65: "HTTPS"}
    return names.get(qtype, f"TYPE{qtype}")


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """One address of a candidate POP, with its health."""

    address: str
    state: State  # effective
    real: State
    forced: State | None
    chosen: bool


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """One POP in the order the strategy ranked it for this client."""

    rank: int  # 1-based position in the strategy's ranking
    pop: str
    state: State  # effective (forced override, else real)
    real: State
    forced: State | None
    eligible: bool  # has an address of the asked family (or the pool answers CNAMEs)
    chosen: bool
    skipped: bool  # passed over because down/drained (this is what triggers ttl_on_failure)
    distance_km: float | None = None  # nearest
    weight: float | None = None  # weighted
    addresses: tuple[AddressInfo, ...] = ()
    cname: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything that went into one selection."""

    pool: str
    strategy: str
    qtype: int
    client: str
    source_prefix: int | None
    location: Location | None
    geoip_network: str | None  # the mmdb network holding the client (None: no GeoIP db)
    rule: str  # which rule/ranking matched, e.g. "continent.EU" or "nearest by distance"
    candidates: tuple[CandidateInfo, ...]
    selection: Selection
    scope_network: str  # client/scope: the block over which this answer holds
    notes: tuple[str, ...] = ()  # TTL reason, all-down policy, scope reasoning

    def lines(self) -> list[str]:
        """Human-readable lines, each at most :data:`MAX_LINE_BYTES` bytes of UTF-8."""
        ecs = f" ecs=/{self.source_prefix}" if self.source_prefix is not None else ""
        out = [f"pool {self.pool} ({self.strategy}) qtype {qtype_text(self.qtype)} "
               f"client {self.client}{ecs}"]
        loc = self.location.describe() if self.location is not None else "unknown location"
        out.append(f"geoip {self.geoip_network or '-'}: {loc}")
        out.append(f"rule: {self.rule}")
        for c in self.candidates:
            extra = []
            if c.distance_km is not None:
                extra.append(f"{c.distance_km:.0f}km")
            if c.weight is not None:
                extra.append(f"weight={c.weight:g}")
            health: str = c.state
            if c.forced is not None or c.real != c.state:
                health += f" (real {c.real}" + (f", forced {c.forced})" if c.forced else ")")
            flags = []
            if c.chosen:
                flags.append("CHOSEN")
            if c.skipped:
                flags.append("skipped")
            if not c.eligible:
                flags.append("no address of this family")
            tail = f" [{', '.join(flags)}]" if flags else ""
            mid = (" " + " ".join(extra)) if extra else ""
            out.append(f"#{c.rank} {c.pop}{mid} {health}{tail}")
            if c.cname is not None:
                out.append(f"   cname {c.cname}")
            for a in c.addresses:
                ah: str = a.state
                if a.forced is not None or a.real != a.state:
                    ah += f" (real {a.real}" + (f", forced {a.forced})" if a.forced else ")")
                out.append(f"   {a.address} {ah}{' *' if a.chosen else ''}")
        sel = self.selection
        if sel.kind == "addresses":
            what = qtype_text(self.qtype)
        elif sel.kind == "cname":
            what = f"CNAME {sel.cname}"
        else:
            what = sel.kind.upper()
        pops = ",".join(sel.pops) or "-"
        labels = (f" arm={sel.arm}" if sel.arm is not None else "") + (
            f" fence={sel.fence}" if sel.fence is not None else "")
        out.append(f"answer {what} ttl={sel.ttl} scope=/{sel.scope} ({self.scope_network}) "
                   f"pops={pops}{labels}")
        out.extend(_wrap("   ", sel.addresses))
        out.extend(f"note: {n}" for n in self.notes)
        return [_fit(line) for line in out]


def _wrap(prefix: str, words: tuple[str, ...]) -> list[str]:
    """Words joined into lines of at most MAX_LINE_BYTES (addresses are ASCII)."""
    lines: list[str] = []
    cur = prefix
    for w in words:
        if cur != prefix and len(cur) + 1 + len(w) > MAX_LINE_BYTES:
            lines.append(cur)
            cur = prefix
        cur += w if cur == prefix else " " + w
    if cur != prefix:
        lines.append(cur)
    return lines


def _fit(line: str) -> str:
    raw = line.encode("utf-8")
    if len(raw) <= MAX_LINE_BYTES:
        return line
    return raw[: MAX_LINE_BYTES - 3].decode("utf-8", "ignore") + "..."
