"""Parsers for [rrl] and [cookies]: the defences against reflection and spoofing.

Like the other section parsers they record every problem and still return a value.
"""

from __future__ import annotations

from typing import Any, Final

from geodns.config.model import CookiesConfig, IPNetwork, KeyPath, RRLConfig
from geodns.config.validator import _cidr, _Validator

_RRL_KEYS: Final = (
    "enabled", "responses_per_second", "errors_per_second", "nxdomains_per_second",
    "window", "slip", "ipv4_prefix", "ipv6_prefix", "exempt", "log_only", "table_size",
)
_COOKIE_KEYS: Final = ("enabled", "secret", "previous_secret", "rotation")
MAX_RATE: Final = 1_000_000
MIN_ROTATION: Final = 3600.0  # a cookie lives an hour (RFC 9018 4.3): outlive it once


def _rrl(v: _Validator, raw: object) -> RRLConfig:
    """A present [rrl] section turns rate limiting on (unless ``enabled = false``)."""
    d = RRLConfig()
    path: KeyPath = ("rrl",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, _RRL_KEYS)

    def rate(key: str, default: Any) -> Any:
        return v.number(tbl, key, path, default, 0, MAX_RATE, integer=True)

    responses = rate("responses_per_second", d.responses_per_second)
    errors = rate("errors_per_second", None)
    nxdomains = rate("nxdomains_per_second", None)
    window = v.number(tbl, "window", path, d.window, 1, 3600, integer=True)
    slip = v.number(tbl, "slip", path, d.slip, 0, 10, integer=True)
    v4 = v.number(tbl, "ipv4_prefix", path, d.ipv4_prefix, 0, 32, integer=True)
    v6 = v.number(tbl, "ipv6_prefix", path, d.ipv6_prefix, 0, 128, integer=True)
    size = v.number(tbl, "table_size", path, d.table_size, 1024, 1 << 26, integer=True)
    exempt: list[IPNetwork] = []
    items = v.str_list(tbl, "exempt", path)
    for i, item in enumerate(items or ()):
        net = _cidr(v, (*path, "exempt", i), item)
        if net is not None:
            exempt.append(net)
    return RRLConfig(
        enabled=v.boolean(tbl, "enabled", path, True),
        responses_per_second=responses if responses is not None else d.responses_per_second,
        errors_per_second=errors,
        nxdomains_per_second=nxdomains,
        window=window if window is not None else d.window,
        slip=slip if slip is not None else d.slip,
        ipv4_prefix=v4 if v4 is not None else d.ipv4_prefix,
        ipv6_prefix=v6 if v6 is not None else d.ipv6_prefix,
        exempt=tuple(exempt),
        log_only=v.boolean(tbl, "log_only", path, False),
        table_size=size if size is not None else d.table_size,
    )


def _secret(v: _Validator, tbl: dict[str, Any], key: str, path: KeyPath) -> bytes | None:
    text = v.string(tbl, key, path, None)
    if text is None:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 16:
        v.error((*path, key), "expected 32 hexadecimal digits (a 128-bit SipHash key), "
                f"got {len(text)} characters")
        return None
    return value


def _cookies(v: _Validator, raw: object) -> CookiesConfig:
    d = CookiesConfig()
    path: KeyPath = ("cookies",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, _COOKIE_KEYS)
    secret = _secret(v, tbl, "secret", path)
    previous = _secret(v, tbl, "previous_secret", path)
    if "previous_secret" in tbl and "secret" not in tbl:
        v.error((*path, "previous_secret"), "needs `secret` (the one cookies are made with)")
    rotation = v.number(tbl, "rotation", path, d.rotation, MIN_ROTATION, 365 * 86400)
    if "rotation" in tbl and "secret" in tbl:
        v.error((*path, "rotation"), "applies to the generated secret only; a configured "
                "`secret` is rolled by hand (new `secret`, old one as `previous_secret`)")
    return CookiesConfig(
        enabled=v.boolean(tbl, "enabled", path, True),
        secret=secret,
        previous_secret=previous,
        rotation=float(rotation) if rotation is not None else d.rotation,
    )
