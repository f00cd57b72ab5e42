"""gdnsd on a free loopback port, as a reference GeoDNS server."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.net import LOCALHOST
from tests.helpers.servers import ServerProcess, run_server

GDNSD_ZONE = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
{resources}
"""


def gdnsd_path() -> str | None:
    for cand in (shutil.which("gdnsd"), "/usr/sbin/gdnsd"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


@contextlib.contextmanager


def gdnsd_server(
    pops: dict[str, tuple[float, float, str]],
    mmdb: Path,
    *,
    origin: str = "example.com",
    resource: str = "www",
    ttl: int = 30,
    limit: int = 1,
    host: str = LOCALHOST,
) -> Iterator[ServerProcess]:
    """Run gdnsd in the foreground serving ``origin`` with one DYNA name ``resource``:
    geoip plugin in city auto mode (nearest datacenter by ``pops`` = name -> (lat, lon,
    IPv4 answer)), ``auto_dc_limit`` = ``limit``, the GeoIP2 database ``mmdb``."""
    gdnsd = gdnsd_path()
    if gdnsd is None:
        raise RuntimeError("gdnsd is not installed")
    cfgdir = Path(tempfile.mkdtemp(prefix="gdnsd-"))
    (cfgdir / "geoip").mkdir()
    (cfgdir / "geoip" / "GeoLite2-City.mmdb").symlink_to(Path(mmdb).resolve())
    (cfgdir / "zones").mkdir()
    (cfgdir / "zones" / origin).write_text(
        GDNSD_ZONE.format(resources=f"{resource} {ttl} DYNA geoip!{resource}")
    )
    coords = "\n".join(f"          {n} => [ {lat}, {lon} ]" for n, (lat, lon, _) in pops.items())
    dcmap = "\n".join(f"          {n} => {ip}" for n, (_, _, ip) in pops.items())

    def argv(port: int) -> list[str]:
        (cfgdir / "config").write_text(
            f"""options => {{
  listen => [ {host}:{port} ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => {cfgdir}/run
  state_dir => {cfgdir}/state
}}
plugins => {{
  geoip => {{
    maps => {{
      pops => {{
        geoip2_db => GeoLite2-City.mmdb
        datacenters => [ {", ".join(pops)} ]
        auto_dc_coords => {{
{coords}
        }}
        auto_dc_limit => {limit}
      }}
    }}
    resources => {{
      {resource} => {{
        map => pops
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
"""
        )
        return [gdnsd, "-c", str(cfgdir), "start"]

    try:
        with run_server(argv, origin + ".", name="gdnsd", host=host, ready_timeout=30) as server:
            yield server
    finally:
        shutil.rmtree(cfgdir, ignore_errors=True)
