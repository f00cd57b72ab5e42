"""Parsers for ``[fences.NAME]`` and a pool's experiment arms (``arms``, ``salt``).

Both are rules that steering may not break, so every problem is a config problem
with its ``FILE:LINE: key.path``: a fence that names an unknown POP or pool, selects
nobody, or covers a pool whose arm hands clients to a pool the fence does not cover;
an arm whose POPs are not the pool's, or whose pool cannot stand in for this one.
Whether a fence leaves some client no POP at all depends on the GeoIP data: that is
``geodns check``'s job (:mod:`geodns.select.fence_check`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Final

from geodns.config.model import (
    CONTINENTS,
    ON_EMPTY_POLICIES,
    Arm,
    Fence,
    IPNetwork,
    KeyPath,
    Pool,
    Pop,
)
from geodns.config.poplist import _PoolCtx, _pop_list
from geodns.config.validator import (
    _MISSING,
    ASN_EXPECTED,
    COUNTRY_RE,
    SUBDIVISION_RE,
    _cidr,
    _name_ok,
    _type_name,
    _Validator,
    as_number,
)

ARM_KEYS: Final = ("arms", "salt")
FENCE_KEYS: Final = ("countries", "continents", "subdivisions", "nets", "asn", "pops",
                     "on_empty", "pools")
MAX_ARMS: Final = 16


# ------------------------------------------------------------------------------ arms


def parse_arms(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any], path: KeyPath,
               candidates: tuple[str, ...]) -> tuple[tuple[Arm, ...], str | None] | None:
    """``arms = { control = 90, new-edge = { weight = 10, pops = [...] } }`` and
    ``salt``; None when anything is wrong (problems recorded)."""
    salt = v.string(tbl, "salt", path, None)
    raw = tbl.get("arms", _MISSING)
    ok = not ("salt" in tbl and salt is None)
    if raw is _MISSING:
        if "salt" in tbl:
            v.error((*path, "salt"), "has no effect without arms")
            return None
        return (), None
    if salt == "":
        v.error((*path, "salt"), "must not be empty (leave it out to salt with the pool name)")
        ok = False
    kp = (*path, "arms")
    sub = v.table(raw, kp)
    if sub is None:
        return None
    if not sub:
        v.error(kp, "must name at least one arm")
        return None
    if len(sub) > MAX_ARMS:
        v.error(kp, f"at most {MAX_ARMS} arms, got {len(sub)}")
        return None
    arms: list[Arm] = []
    for name, spec in sub.items():
        ap = (*kp, name)
        if not _name_ok(v, ap, name, "arm"):
            ok = False
            continue
        arm = _arm(v, ctx, name, spec, ap, candidates)
        if arm is None:
            ok = False
        else:
            arms.append(arm)
    if ok and not any(a.weight > 0 for a in arms):
        v.error(kp, "every arm has weight 0")
        ok = False
    return (tuple(arms), salt) if ok else None


def _arm(v: _Validator, ctx: _PoolCtx, name: str, spec: object, path: KeyPath,
         candidates: tuple[str, ...]) -> Arm | None:
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        if not 0 <= spec <= 1e6:  # (NaN fails too)
            v.error(path, f"weight must be between 0 and 1e6, got {spec!r}")
            return None
        return Arm(name, float(spec))
    if not isinstance(spec, dict):
        v.error(path, "expected a weight (e.g. 10) or a table { weight = 10, pops = [...] } "
                f"or {{ weight = 10, pool = \"NAME\" }}, got {_type_name(spec)}")
        return None
    v.keys(spec, path, ("weight", "pops", "pool"))
    weight = v.number(spec, "weight", path, _MISSING, 0, 1e6)
    pops: tuple[str, ...] | None = None
    pool: str | None = None
    ok = weight is not None
    if "pops" in spec and "pool" in spec:
        v.error((*path, "pool"), "an arm names POPs or a pool, not both")
        return None
    if "pops" in spec:
        pops = _pop_list(v, ctx, spec["pops"], (*path, "pops"))
        if pops is None:
            return None
        for i, p in enumerate(pops):
            if p not in candidates:
                v.error((*path, "pops", i), f"POP {p!r} is not a candidate of this pool (an "
                        "arm restricts the pool's candidates; to send clients elsewhere, "
                        "name another pool)")
                ok = False
    if "pool" in spec:
        pool = v.string(spec, "pool", path, None)
        ok = ok and bool(pool)
        if pool == "":
            v.error((*path, "pool"), "must not be empty")
    if not ok or weight is None:
        return None
    return Arm(name, float(weight), pops, pool)


def check_arm_pools(v: _Validator, pools: Mapping[str, Pool], raw_pools: Mapping[str, Any],
                    pops: Mapping[str, Pop | None]) -> set[str]:
    """Arms that name another pool: it must exist, be another pool without arms of its
    own, and answer the same way (addresses or CNAMEs).  Returns the pools in error."""
    bad: set[str] = set()
    for name, pool in pools.items():
        for arm in pool.arms:
            if arm.pool is None:
                continue
            path: KeyPath = ("pools", name, "arms", arm.name, "pool")
            target = pools.get(arm.pool)
            problem = None
            if arm.pool == name:
                problem = "names its own pool (a plain arm, e.g. control = 90, does that)"
            elif arm.pool not in raw_pools:
                close = difflib.get_close_matches(arm.pool, list(raw_pools), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problem = f"unknown pool {arm.pool!r}{hint}"
            elif target is None:
                continue  # that pool's own problems are reported
            elif target.arms:
                problem = f"pool {arm.pool!r} has arms of its own (arms do not nest)"
            elif _cname_mode(pool, pops) != _cname_mode(target, pops):
                problem = (f"pool {arm.pool!r} answers with "
                           f"{'CNAMEs' if _cname_mode(target, pops) else 'addresses'}, this "
                           f"one with {'CNAMEs' if _cname_mode(pool, pops) else 'addresses'}")
            if problem is not None:
                v.error(path, problem)
                bad.add(name)
    return bad


def _cname_mode(pool: Pool, pops: Mapping[str, Pop | None]) -> bool:
    refs = [pops.get(p) for p in pool.referenced_pops()]
    return bool(refs) and all(p is not None and p.cname is not None for p in refs)


# ------------------------------------------------------------------------------ fences


def parse_fences(v: _Validator, raw: object, ctx: _PoolCtx, pools: Mapping[str, Pool],
                 raw_pools: Mapping[str, Any]) -> dict[str, Fence]:
    """Every ``[fences.NAME]``; problems recorded, broken fences left out."""
    tbl = v.table(raw, ("fences",))
    if tbl is None:
        return {}
    out: dict[str, Fence] = {}
    for name, body in tbl.items():
        fence = _fence(v, name, body, ctx, raw_pools)
        if fence is not None:
            out[name] = fence
    _check_arm_targets(v, out, pools)
    return out


def _fence(v: _Validator, name: str, raw: object, ctx: _PoolCtx,
           raw_pools: Mapping[str, Any]) -> Fence | None:
    path: KeyPath = ("fences", name)
    tbl = v.table(raw, path)
    if tbl is None:
        return None
    ok = _name_ok(v, path, name, "fence")
    v.keys(tbl, path, FENCE_KEYS)
    countries = _codes(v, tbl, "countries", path, COUNTRY_RE,
                       "an ISO 3166-1 alpha-2 country code like \"US\"")
    continents = _codes(v, tbl, "continents", path, None, "")
    subdivisions = _codes(v, tbl, "subdivisions", path, SUBDIVISION_RE,
                          "an ISO 3166-2 code like \"US-CA\"")
    nets = _nets(v, tbl, path)
    asn = _asns(v, tbl, path, ctx.asn_database)
    pops: tuple[str, ...] | None = None
    if "pops" not in tbl:
        v.error((*path, "pops"), "missing required key (the only POPs these clients may get)")
    else:
        pops = _pop_list(v, ctx, tbl["pops"], (*path, "pops"))
    on_empty = v.string(tbl, "on_empty", path, "servfail", ON_EMPTY_POLICIES)
    pools: tuple[str, ...] | None = None
    if "pools" in tbl:
        pools = _pool_names(v, tbl, path, raw_pools)
    if None in (countries, continents, subdivisions, nets, asn, pops, on_empty) or (
            "pools" in tbl and pools is None):
        return None
    assert countries is not None and continents is not None and subdivisions is not None
    assert nets is not None and asn is not None and pops is not None
    if not (countries or continents or subdivisions or nets or asn):
        v.error(path, "selects no clients: give countries, continents, subdivisions, nets "
                "or asn")
        return None
    if not ok:
        return None
    return Fence(name, pops, countries, continents, subdivisions, nets, asn, on_empty, pools)


def _codes(v: _Validator, tbl: Mapping[str, Any], key: str, path: KeyPath,
           pattern: re.Pattern[str] | None, what: str) -> frozenset[str] | None:
    items = v.str_list(tbl, key, path)
    if items is None:
        return None if key in tbl else frozenset()
    out: set[str] = set()
    ok = True
    for i, item in enumerate(items):
        code = item.upper()
        if pattern is None and code not in CONTINENTS:
            v.error((*path, key, i), f"unknown continent code {item!r} (one of "
                    f"{', '.join(sorted(CONTINENTS))})")
            ok = False
        elif pattern is not None and not pattern.match(code):
            v.error((*path, key, i), f"expected {what}, got {item!r}")
            ok = False
        elif code in out:
            v.error((*path, key, i), f"duplicate {code!r}")
            ok = False
        out.add(code)
    return frozenset(out) if ok else None


def _nets(v: _Validator, tbl: Mapping[str, Any], path: KeyPath
          ) -> tuple[IPNetwork, ...] | None:
    items = v.str_list(tbl, "nets", path)
    if items is None:
        return None if "nets" in tbl else ()
    out: list[IPNetwork] = []
    ok = True
    for i, item in enumerate(items):
        net = _cidr(v, (*path, "nets", i), item)
        if net is None:
            ok = False
        elif net in out:
            v.error((*path, "nets", i), f"duplicate network {net}")
            ok = False
        else:
            out.append(net)
    return tuple(out) if ok else None


def _asns(v: _Validator, tbl: Mapping[str, Any], path: KeyPath,
          database: bool) -> frozenset[int] | None:
    raw = tbl.get("asn", _MISSING)
    if raw is _MISSING:
        return frozenset()
    kp = (*path, "asn")
    if not isinstance(raw, list):
        v.error(kp, f"expected an array of AS numbers, got {_type_name(raw)}")
        return None
    ok = True
    if not database:
        v.error(kp, "asn needs [geoip] asn_database (a GeoLite2-ASN style mmdb)")
        ok = False
    out: set[int] = set()
    for i, item in enumerate(raw):
        number = as_number(item)
        if number is None:
            v.error((*kp, i), f"{ASN_EXPECTED}, got {item!r}")
            ok = False
            continue
        if number in out:
            v.error((*kp, i), f"duplicate asn {number}")
            ok = False
        out.add(number)
    return frozenset(out) if ok else None


def _pool_names(v: _Validator, tbl: Mapping[str, Any], path: KeyPath,
                raw_pools: Mapping[str, Any]) -> tuple[str, ...] | None:
    items = v.str_list(tbl, "pools", path)
    if items is None:
        return None
    if not items:
        v.error((*path, "pools"), "must not be empty (leave it out to fence every pool)")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(items):
        if item not in raw_pools:
            close = difflib.get_close_matches(item, list(raw_pools), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            v.error((*path, "pools", i), f"unknown pool {item!r}{hint}")
            ok = False
        elif item in out:
            v.error((*path, "pools", i), f"duplicate pool {item!r}")
            ok = False
        else:
            out.append(item)
    return tuple(out) if ok else None


def _check_arm_targets(v: _Validator, fences: Mapping[str, Fence],
                       pools: Mapping[str, Pool]) -> None:
    """A fenced pool's arm may hand clients to another pool only when every fence of
    this pool covers that one too: else its fenced clients could leave the fence."""
    for name, pool in pools.items():
        for arm in pool.arms:
            if arm.pool is None:
                continue
            for fence in fences.values():
                if fence.applies_to(name) and not fence.applies_to(arm.pool):
                    v.error(("pools", name, "arms", arm.name, "pool"),
                            f"pool {arm.pool!r} is not covered by fence {fence.name!r}, "
                            f"which covers this pool: its fenced clients could leave the "
                            f"fence (add {arm.pool!r} to fences.{fence.name}.pools)")
