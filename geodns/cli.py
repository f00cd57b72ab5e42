"""Command line: `geodns serve`, `geodns check` (and later `explain`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from geodns.listeners.tcp import TCPLimits
from geodns.server import ServeOptions, Server, parse_listen
from geodns.zones.load import ZoneFileError
from geodns.zones.store import ZoneStore, build_store, read_zone_dir

DEFAULT_LISTEN = ["127.0.0.1:5353", "[::1]:5353"]
DEFAULT_ZONES = "zones"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geodns", description="Authoritative GeoDNS server")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="answer DNS queries")
    s.add_argument("--config", help="geodns.toml")
    s.add_argument("--zones", help=f"zone files directory (default {DEFAULT_ZONES})")
    s.add_argument("--listen", action="append", metavar="ADDR:PORT",
                   help="UDP+TCP listener, repeatable; IPv6 as [addr]:port "
                        f"(default {' '.join(DEFAULT_LISTEN)})")
    s.add_argument("--udp-size", type=int, help="our EDNS UDP payload size (default 1232)")
    s.add_argument("--tcp-idle-timeout", type=float, help="seconds (default 10)")
    s.add_argument("--tcp-max-connections", type=int, help="(default 1000)")
    s.add_argument("--watch-interval", type=float, default=1.0,
                   help="seconds between zone directory polls (default 1)")
    s.add_argument("--log-level", default="info")

    c = sub.add_parser("check", help="validate zones (and config) offline")
    c.add_argument("--config", help="geodns.toml")
    c.add_argument("--zones", help=f"zone files directory (default {DEFAULT_ZONES})")
    return p


def _load_store(zones_dir: str) -> ZoneStore:
    return build_store(read_zone_dir(zones_dir))


def cmd_check(args: argparse.Namespace) -> int:
    zones_dir = args.zones or DEFAULT_ZONES
    try:
        store = _load_store(zones_dir)
    except ZoneFileError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    for origin, serial in sorted(store.serials().items()):
        print(f"{origin} serial {serial}: ok", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("geodns")
    try:
        listen = [parse_listen(x) for x in (args.listen or DEFAULT_LISTEN)]
    except ValueError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return 2
    zones_dir = args.zones or DEFAULT_ZONES
    try:
        store = _load_store(zones_dir)
    except ZoneFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("geodns: not starting: the zones above have errors", file=sys.stderr)
        return 1
    tcp = TCPLimits()
    if args.tcp_idle_timeout is not None:
        tcp.idle_timeout = args.tcp_idle_timeout
    if args.tcp_max_connections is not None:
        tcp.max_connections = args.tcp_max_connections
    opts = ServeOptions(zones_dir=zones_dir, listen=listen, config_path=args.config,
                        udp_size=args.udp_size or 1232, tcp=tcp,
                        watch_interval=args.watch_interval)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        log.warning("uvloop not available; using the default event loop")
    server = Server(opts, store)
    try:
        asyncio.run(server.run())
    except OSError as exc:
        print(f"geodns: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "serve":
        return cmd_serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
