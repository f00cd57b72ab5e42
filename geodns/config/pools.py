"""Parsers for [pops.*] and [pools.*], kept together because every pool rule is
validated against the POPs it names (existence, duplicates, CNAME/address mix).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from geodns.config.fences import ARM_KEYS, parse_arms
from geodns.config.model import (
    ALL_DOWN_POLICIES,
    CONTINENTS,
    FALLBACK_STRATEGIES,
    MAX_TTL,
    STRATEGIES,
    IPNetwork,
    KeyPath,
    Pool,
    Pop,
)
from geodns.config.poplist import _PoolCtx, _pop_list
from geodns.config.steering import (
    GUARD_KEYS,
    LATENCY_KEYS,
    SPILL_KEYS,
    asn_rules,
    check_pool_steering,
    steering_options,
)
from geodns.config.validator import (
    _MISSING,
    COUNTRY_RE,
    SUBDIVISION_RE,
    _cidr,
    _name_ok,
    _Validator,
    format_path,
)

_POP_KEYS: Final = ("lat", "lon", "ipv4", "ipv6", "cname", "weight", "health", "capacity",
                     "load", "load_key")
_POOL_COMMON: Final = ("strategy", "ttl", "ttl_on_failure", "answers", "all_down", "pops",
                       *SPILL_KEYS, *GUARD_KEYS, *ARM_KEYS)
# The keys each strategy takes besides the common ones.  What a strategy does with them
# lives in geodns/select/strategies.py (one class per strategy, the same names).
STRATEGY_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "geo": ("continent", "country", "subdivision", "nets", "asn", "default"),
    "nearest": ("default",),
    "failover": (),
    "weighted": ("weights",),
    "all": (),
    "latency": LATENCY_KEYS,  # plus the keys of its fallback strategy
}


def _addresses(v: _Validator, tbl: Mapping[str, Any], key: str, path: KeyPath,
               version: int) -> tuple[str, ...]:
    items = v.str_list(tbl, key, path)
    if items is None:
        return ()
    out: list[str] = []
    for i, item in enumerate(items):
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            ip = None
        if ip is None or ip.version != version:
            v.error((*path, key, i), f"invalid IPv{version} address {item!r}")
            continue
        text = str(ip)
        if text in out:
            v.error((*path, key, i), f"duplicate address {text}")
            continue
        out.append(text)
    return tuple(out)


def _pop(v: _Validator, name: str, raw: object, checks: Mapping[str, Any],
         loads: Mapping[str, Any] | None = None) -> Pop | None:
    path: KeyPath = ("pops", name)
    tbl = v.table(raw, path)
    if tbl is None:
        return None
    named = _name_ok(v, path, name, "POP")
    v.keys(tbl, path, _POP_KEYS)
    lat = v.number(tbl, "lat", path, _MISSING, -90, 90)
    lon = v.number(tbl, "lon", path, _MISSING, -180, 180)
    ipv4 = _addresses(v, tbl, "ipv4", path, 4)
    ipv6 = _addresses(v, tbl, "ipv6", path, 6)
    cname = v.string(tbl, "cname", path, None)
    if cname is not None:
        cname = _dns_name(v, (*path, "cname"), cname)
    weight = v.number(tbl, "weight", path, 1.0, 0, 1e9)
    health = v.string(tbl, "health", path, None)
    if health is not None and health not in checks:
        close = difflib.get_close_matches(health, list(checks), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        v.error((*path, "health"), f"unknown check {health!r}{hint}")
    capacity = v.number(tbl, "capacity", path, None, 0, 1e12, lo_open=True)
    load = v.string(tbl, "load", path, None)
    if load is not None:
        feeds = list(loads or {})
        if load not in feeds:
            close = difflib.get_close_matches(load, feeds, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                ("" if feeds else " (no [loads.NAME] sections)")
            v.error((*path, "load"), f"unknown load feed {load!r}{hint}")
    load_key = v.string(tbl, "load_key", path, None)
    if load_key is not None and load is None:
        v.error((*path, "load_key"), "has no effect without load = \"FEED\"")
    elif load_key == "":
        v.error((*path, "load_key"), "must not be empty")
    if not ipv4 and not ipv6 and cname is None and not any(
            k in tbl for k in ("ipv4", "ipv6", "cname")):
        v.error(path, "POP has no ipv4, ipv6 or cname")
    if lat is None or lon is None or not named:
        return None
    return Pop(name=name, lat=float(lat), lon=float(lon), ipv4=ipv4, ipv6=ipv6, cname=cname,
               weight=float(weight if weight is not None else 1.0), health=health,
               capacity=float(capacity) if capacity is not None else None,
               load=load, load_key=load_key or None)


def _dns_name(v: _Validator, path: KeyPath, text: str) -> str | None:
    import dns.exception
    import dns.name

    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        v.error(path, f"invalid domain name {text!r}: {exc}")
        return None
    if name == dns.name.root:
        v.error(path, "must not be the root name")
        return None
    return name.to_text()


def _rule_table(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any], key: str,
                path: KeyPath) -> dict[str, tuple[str, ...]]:
    raw = tbl.get(key, _MISSING)
    if raw is _MISSING:
        return {}
    kp = (*path, key)
    sub = v.table(raw, kp)
    if sub is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for code, lst in sub.items():
        norm = code.upper()
        if key == "continent" and norm not in CONTINENTS:
            v.error((*kp, code), f"unknown continent code {code!r} (one of "
                    f"{', '.join(sorted(CONTINENTS))})")
            continue
        if key == "country" and not COUNTRY_RE.match(norm):
            v.error((*kp, code), f"expected an ISO 3166-1 alpha-2 country code, got {code!r}")
            continue
        if key == "subdivision" and not SUBDIVISION_RE.match(norm):
            v.error((*kp, code),
                    f"expected an ISO 3166-2 code like \"US-CA\", got {code!r}")
            continue
        if norm in out:
            v.error((*kp, code), f"duplicate {key} {norm!r}")
            continue
        pops = _pop_list(v, ctx, lst, (*kp, code))
        if pops is not None:
            out[norm] = pops
    return out


def _nets(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any],
          path: KeyPath) -> tuple[tuple[IPNetwork, tuple[str, ...]], ...]:
    raw = tbl.get("nets", _MISSING)
    if raw is _MISSING:
        return ()
    kp = (*path, "nets")
    sub = v.table(raw, kp)
    if sub is None:
        return ()
    out: dict[IPNetwork, tuple[str, ...]] = {}
    for cidr, lst in sub.items():
        net = _cidr(v, (*kp, cidr), cidr)
        if net is None:
            continue
        if net in out:
            v.error((*kp, cidr), f"duplicate network {net}")
            continue
        pops = _pop_list(v, ctx, lst, (*kp, cidr))
        if pops is not None:
            out[net] = pops
    return tuple(out.items())


_FALLBACK_EXTRA: Final = tuple(dict.fromkeys(
    k for s in FALLBACK_STRATEGIES for k in STRATEGY_OPTIONS[s]))


def _kind(tbl: Mapping[str, Any], strategy: str) -> str | None:
    """The strategy whose rules a pool's keys follow: itself, or a latency pool's fallback
    (None when that fallback is invalid; steering_options reports it)."""
    if strategy != "latency":
        return strategy
    fallback = tbl.get("fallback", "nearest")
    return fallback if fallback in FALLBACK_STRATEGIES else None


def _pool(v: _Validator, name: str, raw: object, ctx: _PoolCtx) -> Pool | None:
    path: KeyPath = ("pools", name)
    tbl = v.table(raw, path)
    if tbl is None:
        return None
    named = _name_ok(v, path, name, "pool")
    strategy = v.string(tbl, "strategy", path, _MISSING, STRATEGIES)
    if strategy is None:
        every = _POOL_COMMON + tuple({k for e in STRATEGY_OPTIONS.values() for k in e})
        v.keys(tbl, path, every)
        return None
    kind = _kind(tbl, strategy)  # latency: its fallback decides the other keys
    v.keys(tbl, path, _POOL_COMMON + STRATEGY_OPTIONS[strategy] + (
        () if kind == strategy else STRATEGY_OPTIONS[kind] if kind else _FALLBACK_EXTRA),
        f" for strategy {strategy!r}" + (f" with fallback {kind!r}" if kind != strategy
                                         and kind else ""))
    kind = kind or "nearest"
    ttl = v.number(tbl, "ttl", path, 60, 0, MAX_TTL, integer=True)
    ttl_fail = v.number(tbl, "ttl_on_failure", path, 10, 0, MAX_TTL, integer=True)
    answers = v.number(tbl, "answers", path, None if strategy == "all" else 1, 1, 1000,
                       integer=True)
    all_down = v.string(tbl, "all_down", path, "fail_open", ALL_DOWN_POLICIES)
    ok = named and None not in (ttl, ttl_fail, all_down)
    if "answers" in tbl and answers is None:
        ok = False

    pops: tuple[str, ...] | None = ()
    if "pops" in tbl:
        pops = _pop_list(v, ctx, tbl["pops"], (*path, "pops"))
    elif kind in ("failover", "weighted", "all"):
        v.error((*path, "pops"), "missing required key")
        pops = None
    elif kind == "nearest":
        pops = tuple(ctx.pops)
    default: tuple[str, ...] | None = ()
    if "default" in tbl:
        default = _pop_list(v, ctx, tbl["default"], (*path, "default"))
    if pops is None or default is None:
        ok = False
        pops, default = pops or (), default or ()

    continent = country = subdivision = {}
    nets: tuple[tuple[IPNetwork, tuple[str, ...]], ...] = ()
    weights: dict[str, float] = {}
    asn: dict[int, tuple[str, ...]] | None = {}
    if kind == "geo":
        asn = asn_rules(v, ctx, tbl, path)
        continent = _rule_table(v, ctx, tbl, "continent", path)
        country = _rule_table(v, ctx, tbl, "country", path)
        subdivision = _rule_table(v, ctx, tbl, "subdivision", path)
        nets = _nets(v, ctx, tbl, path)
        if not default:
            if pops:
                default = pops
            elif "default" not in tbl:
                v.error((*path, "default"), "missing required key (a geo pool needs a "
                        "default list, or pops)")
                ok = False
    elif kind == "nearest":
        stray = [p for p in default if p not in pops]
        for p in stray:
            v.error((*path, "default", default.index(p)),
                    f"POP {p!r} is not in {format_path((*path, 'pops'))}")
        ok = ok and not stray
    elif kind == "weighted":
        for p in pops:
            pop_obj = ctx.pops[p]
            if pop_obj is not None:
                weights[p] = pop_obj.weight
        raw_w = tbl.get("weights", _MISSING)
        if raw_w is not _MISSING:
            wp = (*path, "weights")
            wt = v.table(raw_w, wp)
            for pop_name in wt or {}:
                if pop_name not in pops:
                    v.error((*wp, pop_name), f"POP {pop_name!r} is not in "
                            f"{format_path((*path, 'pops'))}")
                    ok = False
                    continue
                w = v.number(wt or {}, pop_name, wp, _MISSING, 0, 1e9)
                if w is None:
                    ok = False
                else:
                    weights[pop_name] = float(w)
        if ok and pops and not any(weights.get(p, 0) > 0 for p in pops):
            v.error((*path, "weights") if "weights" in tbl else path,
                    "every POP has weight 0")
            ok = False

    steering = steering_options(v, tbl, path, strategy)
    if steering is None or asn is None:
        ok = False
        steering, asn = {}, {}
    probe = Pool(name=name, strategy=strategy, pops=pops, default=default,
                 continent=continent, country=country, subdivision=subdivision, nets=nets,
                 asn=asn)
    arms = parse_arms(v, ctx, tbl, path, probe.referenced_pops())
    if arms is None:
        ok = False
        arms = ((), None)

    pool = Pool(
        name=name, strategy=strategy, ttl=ttl or 0, ttl_on_failure=ttl_fail or 0,
        answers=answers, all_down=all_down or "fail_open", pops=pops, default=default,
        continent=MappingProxyType(continent), country=MappingProxyType(country),
        subdivision=MappingProxyType(subdivision), nets=nets,
        weights=MappingProxyType(weights), asn=MappingProxyType(asn), **steering,
        arms=arms[0], salt=arms[1],
    )
    refs = [ctx.pops[p] for p in pool.referenced_pops() if ctx.pops.get(p) is not None]
    with_cname = [p.name for p in refs if p is not None and p.cname is not None]
    if with_cname and len(with_cname) != len(refs):
        plain = [p.name for p in refs if p is not None and p.cname is None]
        implicit = " (pops defaults to every POP)" if "pops" not in tbl and \
            kind == "nearest" else ""
        v.error(path, f"mixes CNAME POPs ({', '.join(with_cname)}) with address POPs "
                f"({', '.join(plain)}){implicit}")
        ok = False
    ok = check_pool_steering(v, ctx, tbl, path, pool) and ok
    return pool if ok else None
