"""A fake ControlBackend: what the server exposes, with knobs for the tests."""

from __future__ import annotations

import time
from typing import Any

from geodns.ops.metrics import Metrics
from geodns.ops.status import (
    AddressStatus,
    HealthChange,
    OverrideStatus,
    PoolStatus,
    PopStatus,
    ReloadStatus,
    Status,
    TrafficMix,
    ZoneStatus,
)
from geodns.ops.status_build import answers


def sample_pops() -> list[PopStatus]:
    """Three POPs: iad up, fra drained by an operator, sin found down by its check."""
    def addr(a: str, state: str = "up", real: str = "up", forced: str | None = None
             ) -> AddressStatus:
        return AddressStatus(a, state, real, forced)

    return [
        PopStatus("iad", "up", "up", None, capacity=1000.0, check="web",
                  addresses=(addr("192.0.2.10"), addr("2001:db8:10::1"))),
        PopStatus("fra", "drain", "up", "drain", capacity=500.0, check="web",
                  addresses=(addr("192.0.2.20"), addr("192.0.2.21", "down", "down"))),
        PopStatus("sin", "down", "down", None, capacity=None, check="web",
                  addresses=(addr("192.0.2.30"),)),
    ]


class FakeBackend:
    """Records every call; ``reload_result`` and ``fail_set`` steer the outcomes."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.pops = sample_pops()
        self.overrides: dict[str, tuple[str, float | None]] = {}
        self.reload_result: tuple[bool, list[str]] = (True, [])
        self.reloads = 0
        self.fail_set: str | None = None  # set_override raises ValueError(fail_set)
        self.status_calls = 0
        self.changes: list[HealthChange] = []
        self.last_reload: ReloadStatus | None = ReloadStatus(True, time.time() - 90)

    def status(self, now: float | None = None) -> Status:
        self.status_calls += 1
        now = time.time() if now is None else now
        return Status(
            zones=(ZoneStatus("example.com.", 2026112101 + self.status_calls),),
            pools=(PoolStatus("www", "nearest", 60, pops=("iad", "fra", "sin")),),
            pops=tuple(self.pops),
            last_reload=self.last_reload,
            overrides=tuple(OverrideStatus(p, s, None, True, "api")
                            for p, (s, _) in self.overrides.items()),
            answers=answers(self.metrics, [p.name for p in self.pops], now),
            recent_changes=tuple(self.changes[:50]),
            time=now,
        )

    async def reload(self) -> tuple[bool, list[str]]:
        self.reloads += 1
        return self.reload_result

    def set_override(self, target: str, state: str, until: float | None,
                     force: bool = False) -> None:
        if self.fail_set is not None:
            raise ValueError(self.fail_set)
        self.overrides[target] = (state, until)

    def dry_run(self, target: str, state: str, until: float | None,
                force: bool = False) -> dict[str, Any]:
        return {"allowed": True, "pops": {}, "broken": []}

    def traffic_mix(self) -> TrafficMix:
        return TrafficMix()

    def clear_override(self, target: str) -> bool:
        return self.overrides.pop(target, None) is not None


class AsyncOverridesBackend(FakeBackend):
    """Same, with async override methods (like geodns.health.overrides.Overrides)."""

    async def set_override(self, target: str, state: str,  # type: ignore[override]
                           until: float | None, force: bool = False) -> None:
        FakeBackend.set_override(self, target, state, until, force)

    async def clear_override(self, target: str) -> bool:  # type: ignore[override]
        return FakeBackend.clear_override(self, target)
