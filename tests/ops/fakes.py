"""A fake ControlBackend: what the server exposes, with knobs for the tests."""

from __future__ import annotations

import time
from typing import Any

from geodns.ops.metrics import Metrics


def sample_pops() -> list[dict[str, Any]]:
    """Three POPs: iad up, fra drained by an operator, sin found down by its check."""
    def addr(a: str, state: str = "up", real: str = "up", forced: str | None = None
             ) -> dict[str, Any]:
        return {"address": a, "state": state, "real": real, "forced": forced}

    return [
        {"name": "iad", "state": "up", "real": "up", "forced": None, "capacity": 1000.0,
         "addresses": [addr("192.0.2.10"), addr("2001:db8:10::1")]},
        {"name": "fra", "state": "drain", "real": "up", "forced": "drain", "capacity": 500.0,
         "addresses": [addr("192.0.2.20"), addr("192.0.2.21", "down", "down")]},
        {"name": "sin", "state": "down", "real": "down", "forced": None, "capacity": None,
         "addresses": [addr("192.0.2.30")]},
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
        self.changes: list[dict[str, Any]] = []
        self.last_reload: dict[str, Any] | None = {"ok": True, "time": time.time() - 90,
                                                   "problems": []}

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return {
            "zones": [{"name": "example.com.", "serial": 2026112101 + self.status_calls}],
            "pools": [{"name": "www", "strategy": "nearest", "ttl": 60,
                       "pops": ["iad", "fra", "sin"]}],
            "pops": self.pops,
            "last_reload": self.last_reload,
            "overrides": [{"pattern": p, "state": s, "until": None, "active": True,
                           "source": "api"} for p, (s, _) in self.overrides.items()],
        }

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

    def traffic_mix(self) -> dict[str, Any]:
        return {"entries": [], "window_seconds": 0}

    def clear_override(self, target: str) -> bool:
        return self.overrides.pop(target, None) is not None

    def recent_changes(self) -> list[dict[str, Any]]:
        return list(self.changes)


class AsyncOverridesBackend(FakeBackend):
    """Same, with async override methods (like geodns.health.overrides.Overrides)."""

    async def set_override(self, target: str, state: str,  # type: ignore[override]
                           until: float | None, force: bool = False) -> None:
        FakeBackend.set_override(self, target, state, until, force)

    async def clear_override(self, target: str) -> bool:  # type: ignore[override]
        return FakeBackend.clear_override(self, target)
