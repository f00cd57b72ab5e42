"""Pool options for data-driven steering: spillover, the latency strategy, ASN rules,
guards.  Parsed and validated here so every pool parser problem keeps its
``FILE:LINE: key.path`` form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from geodns.config.model import (
    DEFAULT_MAP_MAX_AGE,
    DEFAULT_MARGIN,
    FALLBACK_STRATEGIES,
    KeyPath,
    Margin,
    Pool,
)
from geodns.config.poplist import _PoolCtx, _pop_list
from geodns.config.validator import _MISSING, ASN_EXPECTED, _type_name, _Validator, as_number

SPILL_KEYS: Final = ("spill", "spill_at", "spill_step")
GUARD_KEYS: Final = ("min_up", "max_share")
LATENCY_KEYS: Final = ("map", "fallback", "max_age", "margin")
_MARGIN_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|ms)\s*$")


def _fallback(v: _Validator, tbl: Mapping[str, Any], path: KeyPath) -> str | None:
    """A latency pool's fallback strategy (default nearest); None when invalid."""
    value: str | None = v.string(tbl, "fallback", path, "nearest", FALLBACK_STRATEGIES)
    return value


def asn_rules(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any],
              path: KeyPath) -> dict[int, tuple[str, ...]] | None:
    """``asn.NNNN = [pops]`` (``asn.AS13335`` too); None when any rule is broken."""
    raw = tbl.get("asn", _MISSING)
    if raw is _MISSING:
        return {}
    kp = (*path, "asn")
    sub = v.table(raw, kp)
    if sub is None:
        return None
    ok = True
    if not ctx.asn_database:
        v.error(kp, "asn rules need [geoip] asn_database (a GeoLite2-ASN style mmdb)")
        ok = False
    out: dict[int, tuple[str, ...]] = {}
    for key, lst in sub.items():
        number = as_number(key)
        if number is None:
            v.error((*kp, key), f"{ASN_EXPECTED}, got {key!r}")
            ok = False
            continue
        if number in out:
            v.error((*kp, key), f"duplicate asn {number}")
            ok = False
            continue
        pops = _pop_list(v, ctx, lst, (*kp, key))
        if pops is None:
            ok = False
            continue
        out[number] = pops
    return out if ok else None


def _margin(v: _Validator, tbl: Mapping[str, Any], path: KeyPath) -> Margin | None:
    raw = tbl.get("margin", _MISSING)
    kp = (*path, "margin")
    if raw is _MISSING:
        return DEFAULT_MARGIN
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        ms = v.number(tbl, "margin", path, None, 0, 10_000)
        return None if ms is None else Margin(ms=float(ms))
    m = _MARGIN_RE.match(raw) if isinstance(raw, str) else None
    if m is None:
        v.error(kp, "expected milliseconds (5, \"5ms\") or a percentage of the current "
                f"best (\"10%\"), got {raw!r}" if isinstance(raw, str) else
                f"expected a number of milliseconds or a string like \"10%\", got "
                f"{_type_name(raw)}")
        return None
    value = float(m.group(1))
    if m.group(2) == "ms":
        if value > 10_000:
            v.error(kp, "must be at most 10000ms")
            return None
        return Margin(ms=value)
    if value >= 100:
        v.error(kp, "must be below 100%")
        return None
    return Margin(ratio=value / 100)


def _map_file(v: _Validator, tbl: Mapping[str, Any], path: KeyPath) -> Path | None:
    if "map" not in tbl:
        v.error((*path, "map"), "missing required key (the latency map file)")
        return None
    p = v.path_value(tbl, "map", path)
    if p is not None and not p.is_file():
        v.error((*path, "map"), f"no such file: {p} (build one with geodns latency-map)")
        return None
    return p


def steering_options(v: _Validator, tbl: Mapping[str, Any], path: KeyPath,
                     strategy: str) -> dict[str, Any] | None:
    """Spill, latency and guard fields for :class:`Pool`; None when any is invalid."""
    ok = True
    out: dict[str, Any] = {}
    spill = v.boolean(tbl, "spill", path, False)
    at = v.number(tbl, "spill_at", path, 0.8, 0, 1, lo_open=True)
    step = v.number(tbl, "spill_step", path, 0.1, 0, 1, lo_open=True)
    if at is None or step is None:
        ok = False
    for key in ("spill_at", "spill_step"):
        if key in tbl and not spill:
            v.error((*path, key), "has no effect without spill = true")
            ok = False
    out.update(spill=spill, spill_at=float(at or 0.8), spill_step=float(step or 0.1))

    if strategy == "latency":
        fallback = _fallback(v, tbl, path)
        map_path = _map_file(v, tbl, path)
        max_age = v.number(tbl, "max_age", path, DEFAULT_MAP_MAX_AGE, 0, 366 * 86400,
                           lo_open=True)
        margin = _margin(v, tbl, path)
        if None in (fallback, map_path, max_age, margin):
            ok = False
        out.update(fallback=fallback, map=map_path, max_age=float(max_age or 0),
                   margin=margin or DEFAULT_MARGIN)

    min_up = v.number(tbl, "min_up", path, None, 1, 1000, integer=True)
    max_share = v.number(tbl, "max_share", path, None, 0, 1, lo_open=True)
    if ("min_up" in tbl and min_up is None) or ("max_share" in tbl and max_share is None):
        ok = False
    out.update(min_up=min_up, max_share=None if max_share is None else float(max_share))
    return out if ok else None


def check_pool_steering(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any],
                        path: KeyPath, pool: Pool) -> bool:
    """Checks that need the whole pool: spill inputs on every POP, feasible guards."""
    ok = True
    pops = pool.referenced_pops()
    if pool.spill:
        if pool.strategy == "all":
            v.error((*path, "spill"), "strategy 'all' answers every POP: nothing to spill")
            ok = False
        for name in pops:
            pop = ctx.pops.get(name)
            if pop is None:
                continue
            missing = [k for k, val in (("capacity", pop.capacity), ("load", pop.load))
                       if val is None]
            if missing:
                v.error((*path, "spill"), f"POP {name!r} has no {' or '.join(missing)} "
                        "(spill needs pops.NAME.capacity and pops.NAME.load on every POP "
                        "of the pool)")
                ok = False
    if pool.min_up is not None and pool.min_up > len(pops):
        v.error((*path, "min_up"), f"can never hold: the pool has {len(pops)} POP"
                f"{'' if len(pops) == 1 else 's'}")
        ok = False
    if pool.max_share is not None and pool.max_share * len(pops) < 1 - 1e-9:
        need = math.ceil(1 / pool.max_share - 1e-9)
        v.error((*path, "max_share"), f"can never hold with {len(pops)} POP"
                f"{'' if len(pops) == 1 else 's'} (a share of {pool.max_share:g} each "
                f"needs at least {need})")
        ok = False
    return ok
