"""POP-list validation shared by the pool parsers (rules, steering options)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from geodns.config.model import KeyPath, Pop
from geodns.config.validator import _type_name, _Validator


class _PoolCtx:
    """What pool validation needs to know about the rest of the config."""

    def __init__(self, pops: Mapping[str, Pop | None], *, asn_database: bool = False,
                 loads: Mapping[str, object] | None = None) -> None:
        self.pops = pops
        self.asn_database = asn_database  # [geoip] asn_database is set
        self.loads = loads or {}  # [loads.NAME] sections


def _pop_list(v: _Validator, ctx: _PoolCtx, value: object, path: KeyPath,
              allow_empty: bool = False) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        v.error(path, f"expected an array of POP names, got {_type_name(value)}")
        return None
    if not value and not allow_empty:
        v.error(path, "must not be empty")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(value):
        if not isinstance(item, str):
            v.error((*path, i), f"expected a POP name, got {_type_name(item)}")
            ok = False
        elif item not in ctx.pops:
            close = difflib.get_close_matches(item, list(ctx.pops), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            v.error((*path, i), f"unknown POP {item!r}{hint}")
            ok = False
        elif item in out:
            v.error((*path, i), f"duplicate POP {item!r}")
            ok = False
        else:
            out.append(item)
    return tuple(out) if ok else None


