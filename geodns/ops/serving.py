"""What the control side may see of a running server, and the one thing it may ask.

The server implements :class:`Serving`: :meth:`Serving.view` hands out a frozen
picture of what is being served (config, zone serials, health snapshot, GeoIP
database, a supervisor's workers), and :meth:`Serving.request_reload` asks for the
same reload a SIGHUP does; :meth:`Serving.refresh_stats` brings the counters up to
date before a read (a supervisor's workers count in their own processes).  Nothing
else of the server is reachable from :mod:`geodns.ops`: the control API, the status
builder and the backend read views and never hold the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from geodns.config import Config
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.geoip import GeoDatabase
from geodns.ops.status import NodeStatus

__all__ = ["ReloadOutcome", "Serving", "ServingView"]


@dataclass(frozen=True, slots=True)
class ServingView:
    """What one server serves at one instant (read-only)."""

    config: Config
    serials: Mapping[str, int]  # zone origin -> serial, of the zones answered for
    health: HealthSnapshot
    geo: GeoDatabase | None = None  # None: no pool needs GeoIP
    node: NodeStatus | None = None  # a supervisor's workers (geodns/workers/)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """A reload's verdict: ``problems`` (``FILE:LINE: problem``) when it failed."""

    ok: bool
    problems: tuple[str, ...] = ()


class Serving(Protocol):
    """The server, as the control side sees it."""

    def view(self) -> ServingView: ...

    async def request_reload(self, reason: str) -> ReloadOutcome: ...

    async def refresh_stats(self) -> None:
        """Bring counters up to date before a read (a supervisor asks its workers)."""
