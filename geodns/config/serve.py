"""What ``geodns serve`` runs with: the ``[server]`` table with the command line's flags
applied over it, once, and the rules both must follow.

``geodns serve`` flags win over the config file; without a config file the listeners
default to loopback port 5353 (a plain ``geodns serve`` must never take port 53 on
every interface by surprise).  The control API on a non-loopback address needs a
bearer token (:func:`control_token_problem`): the config validator, the command line
and the control listener all apply that one rule.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from geodns.config.model import Config, HostPort, ServerConfig, parse_hostport

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_ZONES",
    "FlagError",
    "ServeFlags",
    "apply_flags",
    "control_token_problem",
    "is_loopback",
    "parse_listen",
    "zones_dir",
]

DEFAULT_LISTEN: Final = (HostPort("127.0.0.1", 5353), HostPort("::1", 5353))  # no config
DEFAULT_ZONES: Final = "zones"
HTTP_OFF: Final = ("", "off")
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost"})


class FlagError(ValueError):
    """A command-line flag that cannot be used (a usage error: exit status 2)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also bracketed or v4-mapped) and ``localhost``."""
    h = host.strip().lower()
    if h in _LOOPBACK_NAMES:
        return True
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def control_token_problem(host: str, token: str | None) -> str | None:
    """Why the control API may not listen on ``host`` with ``token`` (None: it may).

    Off loopback every request must carry the bearer token, so there must be one."""
    if is_loopback(host) or token:
        return None
    return f"the control API on {host} is not loopback and has no token"


def parse_listen(text: str) -> HostPort:
    """A ``--listen`` or ``--http`` flag: an address as in the config, but the port is
    required and may be 0 (any free port)."""
    try:
        return parse_hostport(text, None, min_port=0)
    except ValueError as exc:
        raise FlagError(f"bad listen address {text!r}: {exc}") from None


def zones_dir(config: Config, flag: str | None = None) -> Path:
    """``--zones``, else the config's ``server.zones``, else :data:`DEFAULT_ZONES`."""
    if flag:
        return Path(flag)
    return config.server.zones if config.source is not None else Path(DEFAULT_ZONES)


@dataclass(frozen=True, slots=True)
class ServeFlags:
    """The ``geodns serve`` flags that override ``[server]`` (None or empty: not given)."""

    zones: str | None = None
    listen: tuple[str, ...] = ()
    udp_size: int | None = None
    tcp_idle_timeout: float | None = None
    tcp_max_connections: int | None = None
    tcp_message_timeout: float | None = None
    tcp_max_per_client: int | None = None
    http: str | None = None  # "off" or "": no control listener


def apply_flags(config: Config, flags: ServeFlags) -> ServerConfig:
    """``config.server`` with ``flags`` applied over it; :class:`FlagError` names a bad
    flag (``--listen``, ``--http``), ValueError a control listener that breaks the token
    rule.

    Without a config file (``config.source`` None) the listeners default to
    :data:`DEFAULT_LISTEN` and the zones to :data:`DEFAULT_ZONES`.
    """
    server = config.server
    from_file = config.source is not None
    changes: dict[str, object] = {}
    if flags.listen:
        changes["listen"] = tuple(parse_listen(x) for x in flags.listen)
    elif not from_file:
        changes["listen"] = DEFAULT_LISTEN
    changes["zones"] = zones_dir(config, flags.zones)
    if flags.udp_size:
        changes["udp_size"] = flags.udp_size
    for flag, key in (("tcp_idle_timeout", "tcp_idle_timeout"),
                      ("tcp_max_connections", "tcp_max_connections"),
                      ("tcp_message_timeout", "tcp_message_timeout"),
                      ("tcp_max_per_client", "tcp_max_connections_per_client")):
        value = getattr(flags, flag)
        if value is not None:
            changes[key] = value
    if flags.http is not None:
        try:
            changes["http"] = None if flags.http in HTTP_OFF else parse_listen(flags.http)
        except ValueError as exc:
            raise FlagError(f"--http: {exc}") from None
    merged = dataclasses.replace(server, **changes)  # type: ignore[arg-type]
    if merged.http is not None:
        problem = control_token_problem(merged.http.host, merged.http_token)
        if problem is not None:
            raise ValueError(f"{problem}: set [server] http_token in the config (or use "
                             "--http 127.0.0.1:8053, or --http off)")
    return merged
