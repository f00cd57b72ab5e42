"""Parsers for the zone-transfer sections: [tsig.NAME], [transfer] and [secondary."zone."].

They follow the other section parsers: record every problem by key path and still
return something, so the whole file is checked in one run.  A ``key = "..."`` that
names no ``[tsig.NAME]`` table is a problem where it is written.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import dns.exception
import dns.name

from geodns.config.model import (
    TSIG_ALGORITHMS,
    WEAK_TSIG_ALGORITHMS,
    HostPort,
    IPNetwork,
    KeyPath,
    SecondaryZone,
    TransferConfig,
    TsigKey,
    parse_hostport,
)
from geodns.config.validator import _MISSING, _cidr, _Validator

_TRANSFER_KEYS: Final = ("allow", "key", "notify", "state_dir", "journal_max_bytes")
_SECONDARY_KEYS: Final = ("primaries", "key")
DEFAULT_STATE_DIR: Final = "xfr-state"  # beside the config file


def parse_tsig(v: _Validator, raw: object) -> Mapping[str, TsigKey]:
    """``[tsig.NAME]`` tables: algorithm (HMAC-SHA256 or stronger) and a base64 secret."""
    keys: dict[str, TsigKey] = {}
    tbl = v.table(raw, ("tsig",))
    for name, body in (tbl or {}).items():
        path: KeyPath = ("tsig", name)
        entry = v.table(body, path)
        if entry is None:
            continue
        v.keys(entry, path, ("algorithm", "secret"))
        ok = _key_name_ok(v, path, name)
        algorithm = v.string(entry, "algorithm", path, "hmac-sha256")
        if algorithm is not None:
            algorithm = algorithm.lower()
            if algorithm in WEAK_TSIG_ALGORITHMS:
                v.error((*path, "algorithm"), f"{algorithm} is too weak; use one of "
                        f"{', '.join(TSIG_ALGORITHMS)}")
                algorithm = None
            elif algorithm not in TSIG_ALGORITHMS:
                v.error((*path, "algorithm"), f"must be one of {', '.join(TSIG_ALGORITHMS)}; "
                        f"got {algorithm!r}")
                algorithm = None
        secret = _secret(v, entry, path)
        if ok and algorithm is not None and secret is not None:
            keys[name] = TsigKey(name=name, algorithm=algorithm, secret=secret)
    return MappingProxyType(keys)


def _key_name_ok(v: _Validator, path: KeyPath, name: str) -> bool:
    """The table name goes on the wire as the key's owner name: it must be a DNS name."""
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        v.error(path, f"invalid TSIG key name {name!r} (it is sent as a DNS name): {exc}")
        return False
    return True


def _secret(v: _Validator, entry: Mapping[str, Any], path: KeyPath) -> bytes | None:
    text = v.string(entry, "secret", path, _MISSING)
    if text is None:
        return None
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        v.error((*path, "secret"), "not valid base64")
        return None
    if not secret:
        v.error((*path, "secret"), "must not be empty")
        return None
    return secret


def _key_ref(v: _Validator, tbl: Mapping[str, Any], path: KeyPath,
             keys: Mapping[str, TsigKey], declared: Mapping[str, Any]) -> str | None:
    """``key = "NAME"``: must name a [tsig.NAME] table (a broken one is reported there)."""
    name = v.string(tbl, "key", path, None)
    if name is None:
        return None
    if name not in declared:
        known = ", ".join(sorted(declared)) or "none declared"
        v.error((*path, "key"), f"unknown TSIG key {name!r} (keys: {known})")
        return None
    return name if name in keys else None


def _addresses(v: _Validator, tbl: Mapping[str, Any], key: str,
               path: KeyPath) -> tuple[HostPort, ...] | None:
    items = v.str_list(tbl, key, path)
    if items is None:
        return None
    out: list[HostPort] = []
    for i, item in enumerate(items):
        try:
            out.append(parse_hostport(item, 53))
        except ValueError:
            v.error((*path, key, i),
                    f"expected \"addr:port\" or \"[v6addr]:port\", got {item!r}")
    return tuple(out)


def parse_transfer(v: _Validator, raw: object, keys: Mapping[str, TsigKey],
                   declared: Mapping[str, Any]) -> tuple[TransferConfig, Path | None]:
    """``[transfer]`` and its ``state_dir`` (None when not given)."""
    d = TransferConfig()
    path: KeyPath = ("transfer",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d, None
    v.keys(tbl, path, _TRANSFER_KEYS)
    allow: list[IPNetwork] = []
    for i, item in enumerate(v.str_list(tbl, "allow", path) or ()):
        net = _cidr(v, (*path, "allow", i), item)
        if net is not None:
            allow.append(net)
    notify = _addresses(v, tbl, "notify", path) or ()
    size = v.number(tbl, "journal_max_bytes", path, d.journal_max_bytes, 0, 2**40,
                    integer=True)
    config = TransferConfig(
        allow=tuple(allow), key=_key_ref(v, tbl, path, keys, declared), notify=notify,
        journal_max_bytes=size if size is not None else d.journal_max_bytes)
    return config, v.path_value(tbl, "state_dir", path)


def parse_secondary(v: _Validator, raw: object, keys: Mapping[str, TsigKey],
                    declared: Mapping[str, Any]) -> Mapping[str, SecondaryZone]:
    """``[secondary."zone."]`` tables, keyed by the normalised zone name."""
    zones: dict[str, SecondaryZone] = {}
    tbl = v.table(raw, ("secondary",))
    for name, body in (tbl or {}).items():
        path: KeyPath = ("secondary", name)
        entry = v.table(body, path)
        if entry is None:
            continue
        v.keys(entry, path, _SECONDARY_KEYS)
        try:
            zone = dns.name.from_text(name).to_text().lower()
        except dns.exception.DNSException as exc:
            v.error(path, f"invalid zone name {name!r}: {exc}")
            continue
        if zone in zones:
            v.error(path, f"zone {zone} is declared twice")
            continue
        if "primaries" not in entry:
            v.error((*path, "primaries"), "missing required key")
            primaries: tuple[HostPort, ...] | None = None
        else:
            primaries = _addresses(v, entry, "primaries", path)
            if primaries is not None and not entry["primaries"]:
                v.error((*path, "primaries"), "must not be empty")
        key = _key_ref(v, entry, path, keys, declared)
        if primaries:
            zones[zone] = SecondaryZone(zone=zone, primaries=primaries, key=key)
    return MappingProxyType(zones)
