"""How tools/bench starts each server: geodns and the reference servers (NSD, Knot,
gdnsd, PowerDNS), each on 127.0.0.1 on a given port, pinned to the server core."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.clients import GEO_ORIGIN, GEO_QNAME, POPS
from benchlib.plain import zone_origin
from benchlib.procs import LOCALHOST, BenchError, command_version, free_port, write

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class Launch:
    argv: list[str]
    origin: str
    cwd: Path | None = None
    version: str = "unknown"
    notes: list[str] = field(default_factory=list)


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def geodns_command(args: argparse.Namespace) -> list[str]:
    if args.geodns_cmd:
        return shlex.split(args.geodns_cmd)
    venv = REPO / ".venv" / "bin" / "python"
    return [str(venv) if venv.exists() else sys.executable, "-m", "geodns"]


def geodns_version() -> str:
    try:
        from importlib.metadata import version

        return version("geodns")
    except Exception:
        return "unknown"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise BenchError(f"cannot write a {type(value).__name__} value to TOML")


def toml_dump(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """Enough of a TOML writer for geodns.toml: nested tables of scalars and lists."""
    header = ".".join(toml_key(k) for k in prefix)
    lines = [f"[{header}]"] if prefix else []
    subtables = []
    for key, value in table.items():
        if isinstance(value, dict):
            subtables.append(toml_dump(value, (*prefix, key)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                body = toml_dump(item, (*prefix, key)).split("\n", 1)
                subtables.append(f"[[{header + '.' if header else ''}{toml_key(key)}]]")
                subtables.append(body[1] if len(body) > 1 else "")
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join([*lines, *subtables]) + "\n"


@dataclass
class GeodnsSetup:
    """What geodns serves in one mode: ``config`` None means an empty config (plain
    authoritative server); ``querylog_sample`` turns the query log on at that rate."""

    zones: Path
    origin: str
    config: Path | None = None
    querylog_sample: float | None = None
    extra_args: list[str] = field(default_factory=list)


def geodns_config(setup: GeodnsSetup, work: Path, port: int, http_port: int) -> Path:
    """The config geodns is started with: ``setup.config`` or an empty one, with the
    control listener on a free port, absolute paths, state and query log in ``work``."""
    import tomllib

    config: dict[str, Any] = {}
    base = REPO
    if setup.config is not None:
        source = setup.config.resolve()
        if not source.exists():
            raise BenchError(f"geodns config {source} does not exist (--geodns-config)")
        try:
            config = tomllib.loads(source.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BenchError(f"cannot read {source}: {exc}") from None
        base = source.parent
    server = config.setdefault("server", {})
    server["listen"] = [f"{LOCALHOST}:{port}"]
    server["http"] = f"{LOCALHOST}:{http_port}"
    server.pop("zones", None)  # given with --zones
    geoip = config.get("geoip", {})
    if isinstance(geoip.get("database"), str):
        geoip["database"] = str(base / geoip["database"])
    admin = config.get("admin", {})
    if isinstance(admin.get("state_file"), str):
        admin["state_file"] = str(work / "geodns-state.json")
    config.pop("querylog", None)
    if setup.querylog_sample is not None:
        config["querylog"] = {
            "path": str(work / "queries.jsonl"),
            "sample": setup.querylog_sample,
            "max_bytes": 0,
        }
    return write(work / "geodns.toml", toml_dump(config))


def launch_geodns(args: argparse.Namespace, port: int, work: Path, setup: GeodnsSetup) -> Launch:
    zonedir = setup.zones
    if not any(
        zone_origin(f) == setup.origin for f in sorted(zonedir.glob("*.zone")) if f.is_file()
    ):
        raise BenchError(f"no {setup.origin} zone file in {zonedir} (--geodns-zones)")
    http_port = free_port()
    config = geodns_config(setup, work, port, http_port)
    argv = [*geodns_command(args), "serve", "--config", str(config), "--zones", str(zonedir)]
    argv += ["--listen", f"{LOCALHOST}:{port}", *setup.extra_args]
    notes = [f"control listener on {LOCALHOST}:{http_port}"]
    if setup.config is not None:
        notes.append(f"config derived from {setup.config}")
    if setup.querylog_sample is not None:
        notes.append(f"query log on, sample {setup.querylog_sample:g}")
    return Launch(
        pinned(args.server_cpu, argv),
        setup.origin,
        cwd=REPO,
        version=geodns_version(),
        notes=notes,
    )


def launch_nsd(
    args: argparse.Namespace, port: int, work: Path, zones: list[tuple[str, Path]]
) -> Launch:
    if not shutil.which("nsd"):
        raise BenchError("nsd is not installed (apt-get install nsd)")
    zone_entries = "".join(
        f'zone:\n    name: "{origin}"\n    zonefile: "{path}"\n' for origin, path in zones
    )
    conf = write(
        work / "nsd.conf",
        f"""server:
    ip-address: {LOCALHOST}@{port}
    port: {port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{work}"
    pidfile: "{work}/nsd.pid"
    database: ""
    zonelistfile: "{work}/zone.list"
    xfrdfile: "{work}/xfrd.state"
    xfrdir: "{work}"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
{zone_entries}""",
    )
    argv = pinned(args.server_cpu, ["nsd", "-d", "-c", str(conf)])
    version = command_version(["nsd", "-v"], r"NSD version ([\d.]+)")
    return Launch(argv, zones[0][0], version=version, notes=["server-count 1", "RRL off"])


def launch_knot(
    args: argparse.Namespace, port: int, work: Path, zones: list[tuple[str, Path]]
) -> Launch:
    if not shutil.which("knotd"):
        raise BenchError("knotd is not installed (apt-get install knot)")
    (work / "run").mkdir(parents=True, exist_ok=True)
    (work / "db").mkdir(parents=True, exist_ok=True)
    zone_entries = "".join(f'  - domain: "{o}"\n    file: "{p}"\n' for o, p in zones)
    conf = write(
        work / "knot.conf",
        f"""server:
    listen: {LOCALHOST}@{port}
    rundir: "{work}/run"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{work}/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{work}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{zone_entries}""",
    )
    argv = pinned(args.server_cpu, ["knotd", "-c", str(conf)])
    version = command_version(["knotd", "-V"], r"version ([\d.]+)")
    return Launch(argv, zones[0][0], version=version, notes=["1 UDP + 1 TCP worker"])


GEO_STATIC = "static A 192.0.2.200"


def launch_gdnsd(args: argparse.Namespace, port: int, work: Path, mmdb: Path) -> Launch:
    if not shutil.which("gdnsd"):
        raise BenchError("gdnsd is not installed (apt-get install gdnsd)")
    (work / "geoip").mkdir(parents=True, exist_ok=True)
    link = work / "geoip" / "GeoLite2-City.mmdb"
    if not link.exists():
        link.symlink_to(mmdb)
    coords = "\n".join(f"          {p.name} => [ {p.lat}, {p.lon} ]" for p in POPS)
    dcmap = "\n".join(f"          {p.name} => {p.ip}" for p in POPS)
    write(
        work / "config",
        f"""options => {{
  listen => [ {LOCALHOST}:{port} ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => {work}/run
  state_dir => {work}/state
}}
plugins => {{
  geoip => {{
    maps => {{
      pops => {{
        geoip2_db => GeoLite2-City.mmdb
        datacenters => [ {", ".join(p.name for p in POPS)} ]
        auto_dc_coords => {{
{coords}
        }}
        auto_dc_limit => 1
      }}
    }}
    resources => {{
      www => {{
        map => pops
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
""",
    )
    write(
        work / "zones" / GEO_ORIGIN,
        f"""$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
@ NS ns2
ns1 A 192.0.2.53
ns2 A 192.0.2.54
{GEO_STATIC}
www 30 DYNA geoip!www
""",
    )
    argv = pinned(args.server_cpu, ["gdnsd", "-c", str(work), "start"])
    version = command_version(["gdnsd", "-V"], r"gdnsd version ([\d.]+)")
    notes = ["geoip city_auto_mode (nearest POP)", "1 UDP + 1 TCP thread"]
    return Launch(argv, GEO_ORIGIN, version=version, notes=notes)


def launch_pdns(
    args: argparse.Namespace, port: int, work: Path, mmdb: Path, table: dict[str, str]
) -> Launch:
    if not shutil.which("pdns_server"):
        raise BenchError("pdns_server is not installed (apt-get install pdns-server)")
    if not list(Path("/usr/lib").glob("*/pdns/libgeoipbackend.so")):
        raise BenchError("PowerDNS geoip backend missing (apt-get install pdns-backend-geoip)")
    pop_ip = {p.name: p.ip for p in POPS}
    records = [
        f"    {GEO_ORIGIN}:",
        f"      - soa: ns1.{GEO_ORIGIN} hostmaster.{GEO_ORIGIN} 1 7200 3600 1209600 300",
        f"      - ns: ns1.{GEO_ORIGIN}",
        f"      - ns: ns2.{GEO_ORIGIN}",
        f"    ns1.{GEO_ORIGIN}:",
        "      - a: 192.0.2.53",
        f"    ns2.{GEO_ORIGIN}:",
        "      - a: 192.0.2.54",
        f"    static.{GEO_ORIGIN}:",
        "      - a: 192.0.2.200",
        f"    default.pop.{GEO_ORIGIN}:",
        f"      - a: {POPS[0].ip}",
    ]
    for key, pop in table.items():
        records += [f"    {key}.pop.{GEO_ORIGIN}:", f"      - a: {pop_ip[pop]}"]
    service = (
        f"    {GEO_QNAME}: [ '%cc.pop.{GEO_ORIGIN}', '%cn.pop.{GEO_ORIGIN}',"
        f" 'default.pop.{GEO_ORIGIN}' ]"
    )
    zones = write(
        work / "zones.yaml",
        "\n".join(
            [
                "domains:",
                f"- domain: {GEO_ORIGIN}",
                "  ttl: 30",
                "  records:",
                *records,
                "  services:",
                service,
                "",
            ]
        ),
    )
    write(work / "pdns.conf", "# empty: everything is on the command line\n")
    argv = [
        "pdns_server",
        f"--config-dir={work}",
        "--launch=geoip",
        f"--geoip-database-files=mmdb:{mmdb}",
        f"--geoip-zones-file={zones}",
        f"--local-address={LOCALHOST}",
        f"--local-port={port}",
        f"--socket-dir={work}",
        "--daemon=no",
        "--guardian=no",
        "--disable-syslog",
        "--edns-subnet-processing=yes",
        "--security-poll-suffix=",  # no outgoing security-status queries
        "--receiver-threads=1",
        "--distributor-threads=1",
        "--webserver=no",
    ]
    version = command_version(["pdns_server", "--version"], r"Authoritative Server ([\d.]+)")
    notes = ["geoip backend, country/continent table", "1 receiver + 1 distributor thread"]
    return Launch(pinned(args.server_cpu, argv), GEO_ORIGIN, version=version, notes=notes)
