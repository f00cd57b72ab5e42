"""Knot DNS (knotd) on a free loopback port, as a reference authoritative server."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.helpers.net import LOCALHOST
from tests.helpers.servers import ServerProcess, run_server, zone_origin

KNOT_CONF = """\
server:
    rundir: "{rundir}"
    user: {user}
    listen: {host}@{port}
    udp-max-payload: 1232
    tcp-idle-timeout: 10
{server_extra}database:
    storage: "{rundir}"
template:
  - id: default
    storage: "{rundir}"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
    semantic-checks: off
zone:
{zones}
log:
  - target: stderr
    any: info
"""


def knotd_path() -> str | None:
    for cand in (shutil.which("knotd"), "/usr/sbin/knotd"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


@contextlib.contextmanager


def knot_server(zone_files: Sequence[Path], *, host: str = LOCALHOST,
                nsid: str | None = None) -> Iterator[ServerProcess]:
    """Run knotd in the foreground on a free port serving ``zone_files``."""
    knotd = knotd_path()
    if knotd is None:
        raise RuntimeError("knotd is not installed")
    rundir = Path(tempfile.mkdtemp(prefix="knotd-"))
    os.chmod(rundir, 0o755)
    user = "root:root" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    zones = "".join(
        f'  - domain: "{zone_origin(Path(z))}"\n    file: "{Path(z).resolve()}"\n'
        for z in zone_files
    )

    def argv(port: int) -> list[str]:
        conf = rundir / f"knot-{port}.conf"
        conf.write_text(
            KNOT_CONF.format(rundir=rundir, user=user, host=host, port=port, zones=zones,
                             server_extra=f'    nsid: "{nsid}"\n' if nsid else "")
        )
        return [knotd, "-c", str(conf)]

    try:
        with run_server(argv, zone_origin(Path(zone_files[0])), name="knotd", host=host) as server:
            yield server
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
