"""Command line: `geodns serve`, `check`, `explain`, `simulate`, `latency-map`.

Every command's arguments are parsed here (their work lives in their modules), and
every command finds its config the same way (``--config``, else ``./geodns.toml``,
see :mod:`geodns.config.discover`) and says which one it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdatatype

from geodns.config import Config, ConfigError, load_config
from geodns.config.discover import ConfigChoice, find_config
from geodns.config.serve import (
    DEFAULT_ZONES,
    FlagError,
    ServeFlags,
    apply_flags,
    parse_listen,
    zones_dir,
)
from geodns.geoip.asn import asn_database_problems, explain_asn
from geodns.health.override_poll import read_rules
from geodns.listeners.tcp import TCPLimits
from geodns.logs import FORMATS, LEVELS, event, setup_logging
from geodns.ops.geoip import describe_record, read_info
from geodns.ops.simulate import EXIT_BROKEN, read_loads, scenario_snapshot
from geodns.problems import Problems
from geodns.runtime import Runtime, cross_check, geoip_problems
from geodns.select.fence_check import fence_problems
from geodns.select.inputs import check_steering
from geodns.server import ServeOptions, Server
from geodns.service import Service, check_user, version
from geodns.traffic.latency_build import BuildOptions
from geodns.traffic.spill import steady_shares
from geodns.workers.supervisor import Supervisor, usable_cpus
from geodns.workers.takeover import TakeoverError
from geodns.xfr.service import conflicts, declared
from geodns.zones.load import ZoneFileError
from geodns.zones.loader import ZoneLoader
from geodns.zones.store import ZoneStore


def _config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", metavar="FILE",
                   help="config file (default: ./geodns.toml when it exists)")
    g.add_argument("--no-config", action="store_true",
                   help="ignore ./geodns.toml: zones only, no pools")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own (for errors in its words)."""
    p = argparse.ArgumentParser(prog="geodns", description="Authoritative GeoDNS server")
    p.add_argument("--version", action="version", version=f"geodns {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="answer DNS queries")
    _config_flags(s)
    s.add_argument("--zones", help="zone files directory (default: the config's "
                   f"server.zones, else {DEFAULT_ZONES})")
    s.add_argument("--listen", action="append", metavar="ADDR:PORT",
                   help="UDP+TCP listener, repeatable; IPv6 as [addr]:port "
                        "(default: the config's server.listen, else 127.0.0.1:5353 and "
                        "[::1]:5353)")
    s.add_argument("--udp-size", type=int, help="our EDNS UDP payload size (default 1232)")
    s.add_argument("--tcp-idle-timeout", type=float, help="seconds (default 10)")
    s.add_argument("--tcp-max-connections", type=int, help="(default 1000)")
    s.add_argument("--tcp-message-timeout", type=float,
                   help="seconds a query may take to arrive whole (default 3)")
    s.add_argument("--tcp-max-per-client", type=int,
                   help="connections per IPv4 address / IPv6 /64 (default 100)")
    s.add_argument("--http", metavar="ADDR:PORT",
                   help="control API, status page and /metrics (default from the config, "
                        "127.0.0.1:8053; 'off' disables)")
    s.add_argument("--watch-interval", type=float, default=1.0,
                   help="seconds between zone directory polls (default 1)")
    s.add_argument("--log-level", default="info", type=str.lower, choices=LEVELS,
                   help="(default info)")
    s.add_argument("--log-format", default="text", choices=FORMATS,
                   help="text (default) or json: one JSON object per line, with stable "
                        "keys for events (reloads, health changes, control writes)")
    s.add_argument("--user", metavar="NAME",
                   help="started as root: switch to this user once the DNS sockets are "
                        "bound (see contrib/systemd for running without root at all)")
    s.add_argument("--workers", type=_workers, metavar="N",
                   help="DNS worker processes sharing each port (SO_REUSEPORT); 1: one "
                        "process does everything (default: $GEODNS_WORKERS, else the "
                        "number of usable CPUs)")
    s.add_argument("--replace", action="store_true",
                   help="take over the sockets of the geodns already serving these ports "
                        "and stop it once we answer: a restart without a lost query")

    c = sub.add_parser("check", help="validate zones (and config) offline")
    _config_flags(c)
    c.add_argument("--zones", help="zone files directory (default: the config's "
                   f"server.zones, else {DEFAULT_ZONES})")

    sim = sub.add_parser(
        "simulate", help="what-if traffic shares per POP (see geodns simulate -h)",
        description="Predict each POP's share of traffic now and with POPs down or "
        "drained, using the server's own selection code.")
    _simulate_parser(sim)
    _latency_map_parser(sub.add_parser(
        "latency-map", help="build a latency map from raw measurements (see geodns "
        "latency-map -h)", description="Build a latency map (prefix,pop,rtt_ms,samples) "
        "from raw measurements (client_ip,pop,rtt_ms[,time])."))

    e = sub.add_parser("explain", help="why does this client get that answer?")
    e.add_argument("name", help="a steered (DYNA) name, e.g. www.example.com")
    e.add_argument("type", nargs="?", default="A", help="A or AAAA (default A)")
    e.add_argument("--client", required=True,
                   help="client address or ECS prefix, e.g. 81.2.69.160 or 81.2.69.0/24")
    _config_flags(e)
    e.add_argument("--zones", help="zone files directory (default from the config)")
    e.add_argument("--down", action="append", default=[], metavar="POP",
                   help="treat this POP (or POP/ADDRESS) as down: what-if, repeatable")
    e.add_argument("--load", action="append", default=[], metavar="POP=LOAD",
                   help="a POP's load (spill pools shed what these loads settle at); "
                        "repeatable")
    return p, {"simulate": sim}


def _simulate_parser(p: argparse.ArgumentParser) -> None:
    """``geodns simulate`` (the work: :func:`geodns.ops.simulate.run`)."""
    p.add_argument("--config", help="config file (default: ./geodns.toml when it exists)")
    p.add_argument("--clients", help="CSV 'ip_or_prefix,weight' (weight in qps) or a "
                   "JSON-lines query log (1 per line, times --scale)")
    p.add_argument("--from", dest="from_url", metavar="URL",
                   help="a running server's control API (e.g. http://127.0.0.1:8053): its "
                   "health, loads and spill shares, and (without --clients) its recent "
                   "answer mix")
    p.add_argument("--token", help="bearer token for --from (a non-loopback control API)")
    p.add_argument("--down", action="extend", nargs="+", default=[], metavar="TARGET",
                   help="POP (or POP/*, POP/ADDRESS) forced down; repeatable")
    p.add_argument("--drain", action="extend", nargs="+", default=[], metavar="TARGET",
                   help="POP (or POP/*, POP/ADDRESS) drained; repeatable")
    p.add_argument("--pool", help="pool to ask (default: the only pool, or each log "
                   "line's pool)")
    p.add_argument("--qtype", help="A or AAAA (default A, or each log line's qtype)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every weight (e.g. turn a log's line count into qps)")
    p.add_argument("--loads", metavar="FILE", help="POP loads as a load feed file (JSON "
                   "or CSV, as [loads] type file reads): spill pools shed what these loads "
                   "settle at, and capacity counts in their unit")
    p.add_argument("--load", action="append", default=[], metavar="POP=LOAD",
                   help="one POP's load (repeatable; wins over --loads)")
    p.add_argument("--check", action="store_true", help=f"exit {EXIT_BROKEN} when the "
                   "scenario pushes a POP past its capacity or breaks a pool's guard "
                   "(min_up, max_share): for CI of drill plans")
    p.add_argument("--geoip", help="mmdb file (default: the config's [geoip] database)")
    p.add_argument("--plot", metavar="FILE", help="write a PNG bar chart")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _latency_map_parser(p: argparse.ArgumentParser) -> None:
    """``geodns latency-map`` (the work: :func:`geodns.traffic.latency_build.run`)."""
    d = BuildOptions()
    p.add_argument("--input", required=True, help="raw CSV: client_ip,pop,rtt_ms[,time]")
    p.add_argument("--output", required=True, help="the map file to write (atomically)")
    p.add_argument("--config", help="geodns.toml: reject rows naming POPs it does not have")
    p.add_argument("--v4-prefix", type=int, default=d.v4_prefix, metavar="N",
                   help=f"group IPv4 clients by /N (default {d.v4_prefix})")
    p.add_argument("--v6-prefix", type=int, default=d.v6_prefix, metavar="N",
                   help=f"group IPv6 clients by /N (default {d.v6_prefix})")
    p.add_argument("--min-samples", type=int, default=d.min_samples, metavar="N",
                   help=f"samples needed per (prefix, POP) (default {d.min_samples})")
    p.add_argument("--min-pops", type=int, default=d.min_pops, metavar="N",
                   help=f"POPs needed per prefix (default {d.min_pops})")
    p.add_argument("--tolerance-ms", type=float, default=d.tolerance_ms, metavar="MS",
                   help=f"siblings agree within max(MS, PCT%%) (default {d.tolerance_ms:g})")
    p.add_argument("--tolerance-pct", type=float, default=d.tolerance_pct, metavar="PCT",
                   help=f"(default {d.tolerance_pct:g})")
    p.add_argument("--widest-v4", type=int, default=d.widest_v4, metavar="N",
                   help=f"never merge IPv4 beyond /N (default {d.widest_v4})")
    p.add_argument("--widest-v6", type=int, default=d.widest_v6, metavar="N",
                   help=f"never merge IPv6 beyond /N (default {d.widest_v6})")
    p.add_argument("--no-merge", action="store_true", help="keep the grouping prefixes")
    p.add_argument("--skip-bad", action="store_true",
                   help="report bad lines and go on without them (default: write nothing)")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{n}: between 1 and 256")
    return n


def default_workers() -> int:
    """``$GEODNS_WORKERS`` when set (tests and containers), else the usable CPUs."""
    env = os.environ.get("GEODNS_WORKERS", "").strip()
    if env:
        try:
            return _workers(env)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"GEODNS_WORKERS: {exc}") from None
    return usable_cpus()


def _load_store(zones_dir: str, loader: ZoneLoader | None = None) -> ZoneStore:
    """Every zone of the directory (the loader keeps them, so a reload of the server
    re-reads only what changed)."""
    return (loader or ZoneLoader(zones_dir)).load()


def _config(path: str | None) -> Config:
    return load_config(path) if path else Config.default()


def _choose_config(args: argparse.Namespace) -> ConfigChoice:
    """Resolve --config / ./geodns.toml once; later steps read ``args.config``."""
    choice = find_config(args.config, args.no_config)
    args.config = choice.path
    return choice


def _zones_dir(args: argparse.Namespace, config: Config) -> str:
    return str(zones_dir(config, args.zones))


def _load_all(args: argparse.Namespace,
              loader: ZoneLoader | None = None) -> tuple[Config, ZoneStore]:
    """Config and zones, validated together; raises Problems with every problem."""
    problems: list[str] = []
    config = Config.default()
    try:
        config = _config(args.config)
    except ConfigError as exc:
        problems += exc.problems
    store = None
    try:
        if loader is not None:
            loader.directory = _zones_dir(args, config)
        store = _load_store(_zones_dir(args, config), loader)
    except ZoneFileError as exc:
        problems += exc.problems
    if store is not None and not problems:
        problems += cross_check(store, config)
        problems += conflicts(store, declared(config))  # a zone both a file and [secondary]
    if problems or store is None:
        raise Problems(problems)
    return config, store


def cmd_check(args: argparse.Namespace) -> int:
    """Problems on stdout (one ``file:line: problem`` each), the verdicts on stderr."""
    print(_choose_config(args).describe(), file=sys.stderr)
    try:
        config, store = _load_all(args)
    except Problems as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    problems = geoip_problems(config)
    problems += asn_database_problems(config.geoip.asn_database)  # issue 12: [geoip] asn
    map_problems, map_lines = check_steering(config, time.time())  # issue 12: latency maps
    problems += map_problems
    if not problems:  # issue 15: fences and arms that leave clients no POP
        problems += fence_problems(config)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    if args.config:
        print(f"{args.config}: ok: {len(config.pops)} POPs, {len(config.pools)} pools, "
              f"{len(config.checks)} checks", file=sys.stderr)
    if config.pools:
        _print_geoip(config)
    for line in map_lines:
        print(line, file=sys.stderr)
    print(f"zones: {_zones_dir(args, config)}", file=sys.stderr)
    for origin, serial in sorted(store.serials().items()):
        print(f"{origin} serial {serial}: ok", file=sys.stderr)
    return 0


def _print_geoip(config: Config) -> None:
    """The database's type and age; a warning (not a failure) when it is too old."""
    try:
        info = read_info(config.geoip.database, config.geoip.max_age_days)
    except Exception as exc:  # geoip_problems already opened it; be safe anyway
        print(f"geoip: cannot read metadata of {config.geoip.database}: {exc}",
              file=sys.stderr)
        return
    desc = f" ({info.description})" if info.description else ""
    print(f"geoip: {info.describe()}{desc}", file=sys.stderr)
    warning = info.warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> int:
    print(_choose_config(args).describe(), file=sys.stderr)
    try:
        config, store = _load_all(args)
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    try:
        qtype = dns.rdatatype.from_text(args.type)
        name = dns.name.from_text(args.name)
        client, _, plen = args.client.partition("/")
        ip = ipaddress.ip_address(client)
        prefix = int(plen) if plen else None
    except (ValueError, dns.exception.DNSException) as exc:
        print(f"geodns explain: {exc}", file=sys.stderr)
        return 2
    answer = store.lookup(name, qtype)
    if answer.dynamic is None:
        print(f"{name} {args.type.upper()}: not a steered (DYNA) name; every client gets the "
              "same static answer (ECS scope 0)")
        return 0
    try:
        snapshot = scenario_snapshot(config, down=args.down,
                                     base=read_rules(config.admin.state_file))
        loads = read_loads(None, args.load, config)
    except ValueError as exc:
        print(f"geodns explain: {exc}", file=sys.stderr)
        return 1
    try:
        runtime = Runtime.load(config)
    except Problems as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    spill = runtime.selector.inputs.spill
    if spill is not None:  # issue 12: spill pools shed what the given loads settle at
        spill.state = steady_shares(config, loads)
    for line in runtime.selector.explain(answer.dynamic.pool, qtype, ip.compressed, prefix,
                                         snapshot).lines():
        print(line)
    for line in describe_record(config.geoip.database, args.client):
        print(line)
    if config.geoip.asn_database is not None:  # issue 12: which network the client is in
        print(explain_asn(config.geoip.asn_database, ip.compressed))
    print("health: checks are not run offline (real state shown as up); forced states come "
          "from the admin-state file" + (" and --down" if args.down else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    log = logging.getLogger("geodns")
    try:
        for text in args.listen or ():
            parse_listen(text)  # a usage error: said before anything is loaded
    except ValueError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return 2
    account = None
    if args.user is not None:
        try:
            account = check_user(args.user)
        except ValueError as exc:
            print(f"geodns: {exc}", file=sys.stderr)
            return 1
    choice = _choose_config(args)
    log.info("geodns %s starting; %s", version(), choice.describe(),
             extra=event("start", version=version(), config=choice.path,
                         config_source=choice.how))
    loader = ZoneLoader(DEFAULT_ZONES)
    started = time.monotonic()
    try:
        config, store = _load_all(args, loader)
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("geodns: not starting: fix the problems above", file=sys.stderr)
        return 1
    log.info("zones loaded in %.1f s: %d zones, %d names", time.monotonic() - started,
             len(store.zones), sum(len(z.nodes) for z in store.zones.values()))
    flags = ServeFlags(args.zones, tuple(args.listen or ()), args.udp_size,
                       args.tcp_idle_timeout, args.tcp_max_connections,
                       args.tcp_message_timeout, args.tcp_max_per_client, args.http)
    try:
        srv = apply_flags(config, flags)
    except FlagError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the control API off loopback without a token
        print(f"geodns: {exc}", file=sys.stderr)
        return 1
    tcp = TCPLimits(srv.tcp_idle_timeout, srv.tcp_max_connections, srv.tcp_message_timeout,
                    srv.tcp_max_connections_per_client)
    try:
        workers = args.workers or default_workers()
    except ValueError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return 2
    opts = ServeOptions(zones_dir=str(srv.zones), listen=list(srv.listen),
                        config_path=args.config, http=srv.http, http_token=srv.http_token,
                        udp_size=srv.udp_size, tcp=tcp, watch_interval=args.watch_interval,
                        service=Service(account), workers=workers, replace=args.replace)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        log.warning("uvloop not available; using the default event loop")
    try:
        # opens GeoIP, compiles maps; with workers, one process per core answers
        server = Server(opts, store, config, loader) if workers == 1 else \
            Supervisor(opts, store, config, loader)
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("geodns: not starting: fix the problems above", file=sys.stderr)
        return 1
    try:
        asyncio.run(server.run())
    except (OSError, TakeoverError) as exc:  # a BindError names the address and the fix
        print(f"geodns: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a non-loopback control listener without a token
        print(f"geodns: {exc}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Every command's arguments (exit 2 with usage on bad ones, as argparse does)."""
    parser, commands = _parser()
    args = parser.parse_args(list(argv))
    if args.command == "simulate" and not args.clients and not args.from_url:
        commands["simulate"].error("one of --clients or --from is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "explain":
        return cmd_explain(args)
    if args.command == "simulate":
        from geodns.ops import simulate
        return simulate.run(args)
    if args.command == "latency-map":
        from geodns.traffic import latency_build
        return latency_build.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
