"""The one object the handler calls per answer: response rate limiting and DNS cookies.

The handler builds its answer as always and hands it here with who asked and how
(``answer``; ``replay`` for packet-cache hits).  We return the bytes to send (the answer,
a truncated slip, BADCOOKIE, or the answer with our server cookie) or None to drop, and
the RRL account key so a cached answer keeps counting against the same account.  With
both defences off the handler holds None and pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from geodns.config.model import Config
from geodns.cookies import BADCOOKIE, Cookies
from geodns.ops.metrics import Metrics
from geodns.rrl import ERROR_TOKEN, RateLimiter, Token
from geodns.wire import decode as wd
from geodns.wire.encode import error_response
from geodns.wire.patch import with_option
from geodns.zones.store import ZoneStore

COOKIE_CODE: Final = wd.COOKIE_CODE


class Defences:
    """RRL and cookies as configured; either may be None (off)."""

    def __init__(self, rrl: RateLimiter | None, cookies: Cookies | None,
                 metrics: Metrics | None = None) -> None:
        self.rrl = rrl
        self.cookies = cookies
        self.metrics = metrics
        # A packet-cache hit over UDP counts like a fresh answer: (response, account key,
        # client) -> what to send.  RRL's own closure, so the per-query cost is one call.
        self.replay: Callable[[bytes, Token, str], bytes | None] = \
            rrl.respond if rrl is not None else _unchanged

    @classmethod
    def build(cls, config: Config, metrics: Metrics | None = None,
              old: Defences | None = None) -> Defences | None:
        """From the config; reuses the accounts table and cookie secrets of ``old`` when
        their settings did not change (a reload must not forget a flood)."""
        rrl: RateLimiter | None = None
        if config.rrl.enabled:
            if old is not None and old.rrl is not None:
                rrl = old.rrl.reconfigured(config.rrl)
            else:
                rrl = RateLimiter(config.rrl,
                                  on_limit=metrics.rrl_limited if metrics is not None
                                  else None)
        cookies: Cookies | None = None
        if config.cookies.enabled:
            if old is not None and old.cookies is not None:
                cookies = old.cookies.reconfigured(config.cookies)
            else:
                cookies = Cookies(config.cookies)
        if rrl is None and cookies is None:
            return None
        return cls(rrl, cookies, metrics)

    def answer(self, q: wd.Query, resp: bytes, client: str, tcp: bool, pool: str | None,
               store: ZoneStore, udp_size: int) -> tuple[bytes | None, Token | None]:
        """What to send for ``resp`` (None: nothing), and its RRL account key."""
        opt_data: bytes | None = None
        valid = False
        cookies = self.cookies
        if q.cookie is not None and cookies is not None and q.error != wd.FORMERR:
            valid, opt_data = cookies.answer(q.cookie, client)
            if self.metrics is not None:
                self.metrics.cookies["valid" if valid else
                                     "client_only" if len(q.cookie) == 8 else "invalid"] += 1
        token: Token | None = None
        rrl = self.rrl
        if rrl is not None:
            token = ERROR_TOKEN if q.error else rrl.token(store, q.qname, q.qtype,
                                                          resp[3] & 15, pool)
            if not tcp and not valid:
                out = rrl.respond(resp, token, client)
                if out is not resp:  # over the limit
                    if out is None:
                        return None, token
                    if opt_data is not None:
                        # A cookie-speaking client: tell it our cookie instead, so its
                        # retry is exempt (RFC 7873 5.2.3; BIND does the same).
                        resp = error_response(q, BADCOOKIE, udp_size)
                        if self.metrics is not None:
                            self.metrics.cookies["badcookie_sent"] += 1
                    else:
                        resp = out  # the slip: truncated
        if opt_data is not None:
            limit = 0
            if not tcp:
                limit = (q.payload if q.payload < udp_size else udp_size) if q.edns else 512
            # our OPT echoes ECS (when asked) and nothing else: that is its RDATA length
            hint = 4 + len(q.ecs) if q.ecs is not None else 0
            resp = with_option(resp, q.qend, COOKIE_CODE, opt_data, limit, hint)
        return resp, token



def _unchanged(resp: bytes, token: Token, client: str) -> bytes | None:
    return resp
