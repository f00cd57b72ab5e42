"""Real servers for the transfer tests: geodns, Knot and NSD as primaries and
secondaries on loopback, each with a config generated in a temporary directory.

Ports are chosen up front (``free_port``) because primaries and secondaries name
each other in their configs.  Every process is stopped when its context exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype

from tests.util import (
    LOCALHOST,
    ServerProcess,
    ask,
    free_port,
    geodns_cmd,
    knotd_path,
    make_query,
    stop_process,
    udp_query,
    wait_ready,
)

# One shared secret for the key "xfr-key" (32 random bytes), and a different one
# with the same name for the mismatch tests.
SECRET = "l8uyAXzRkSBIePfhdq6Am5jEaJGp3tXAlq3lT/eFCzQ="
WRONG_SECRET = "3w9cdJtmXKFYnUZ2pQe8uJfFhDhQ8n2bSxMbq5a1Ki4="
KEY = "xfr-key"


def nsd_path() -> str | None:
    for cand in (shutil.which("nsd"), "/usr/sbin/nsd"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def write(path: Path, text: str) -> None:
    """Atomic write (a hidden temporary file renamed over the target)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def zone(origin: str, serial: int, body: str, *, refresh: int = 3600, retry: int = 600,
         expire: int = 86400, ttl: int = 300) -> str:
    """A zone file with an SOA built from the timers, NS ns1 and ``body``."""
    return (f"$ORIGIN {origin}\n$TTL {ttl}\n"
            f"@ IN SOA ns1 hostmaster {serial} {refresh} {retry} {expire} 300\n"
            f"  IN NS ns1\nns1 IN A 192.0.2.1\n{body}")


def tsig_toml(secret: str = SECRET) -> str:
    return f'[tsig.{KEY}]\nalgorithm = "hmac-sha256"\nsecret = "{secret}"\n'


# ----------------------------------------------------------------------------- processes


@contextlib.contextmanager
def process(argv: Sequence[str], port: int, ready_name: str, name: str,
            log: Path, ready_timeout: float = 15.0) -> Iterator[ServerProcess]:
    """Run ``argv`` (which listens on ``port``) until it answers, stop it at exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    server = ServerProcess(proc, port, log, LOCALHOST)
    try:
        if not wait_ready(port, ready_name, proc, timeout=ready_timeout):
            raise RuntimeError(f"{name} not ready on port {port} (exit {proc.poll()}):\n"
                               f"{server.stderr_text()[-4000:]}")
        yield server
    finally:
        stop_process(proc)


@contextlib.contextmanager
def geodns(config: str, zones: Path | None = None, port: int | None = None,
           *, workdir: Path, ready_name: str = ".",
           watch_interval: float = 0.2, workers: int = 1) -> Iterator[ServerProcess]:
    """geodns serve with ``config`` (TOML text) written to ``workdir/geodns.toml``;
    the control API on a random loopback port (``control_port()``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    zones = zones or workdir / "zones"
    zones.mkdir(exist_ok=True)
    path = workdir / "geodns.toml"
    path.write_text(config)
    port = port or free_port()
    argv = geodns_cmd("serve", "--config", str(path), "--zones", str(zones), "--listen",
                      f"{LOCALHOST}:{port}", "--http", f"{LOCALHOST}:0", "--watch-interval",
                      str(watch_interval), "--log-level", "debug", "--workers", str(workers))
    with process(argv, port, ready_name, "geodns", workdir / "geodns.log") as server:
        yield server


KNOT_HEAD = """\
server:
    rundir: "{rundir}"
    user: {user}
    listen: 127.0.0.1@{port}
database:
    storage: "{rundir}"
key:
  - id: {key}
    algorithm: hmac-sha256
    secret: {secret}
log:
  - target: stderr
    any: info
"""


def knot_user() -> str:
    return "root:root" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"


@contextlib.contextmanager
def knot(body: Callable[[Path], str], port: int, ready_name: str,
         secret: str = SECRET) -> Iterator[tuple[ServerProcess, Path]]:
    """knotd with KNOT_HEAD plus ``body(rundir)`` (remotes, acls, templates, zones)."""
    knotd = knotd_path()
    assert knotd is not None
    rundir = Path(tempfile.mkdtemp(prefix="knotd-xfr-"))
    os.chmod(rundir, 0o755)
    conf = rundir / "knot.conf"
    conf.write_text(KNOT_HEAD.format(rundir=rundir, user=knot_user(), port=port, key=KEY,
                                     secret=secret) + body(rundir))
    try:
        with process([knotd, "-c", str(conf)], port, ready_name, "knotd",
                     rundir / "knotd.log") as server:
            yield server, rundir
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


NSD_CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    username: ""
    zonesdir: "{rundir}"
    database: ""
    pidfile: "{rundir}/nsd.pid"
    xfrdfile: "{rundir}/xfrd.state"
    zonelistfile: "{rundir}/zone.list"
    xfrdir: "{rundir}"
    verbosity: 2
    refuse-any: no
remote-control:
    control-enable: no
key:
    name: "{key}"
    algorithm: hmac-sha256
    secret: "{secret}"
{zones}
"""


@contextlib.contextmanager
def nsd_secondary(zones: Sequence[str], primary_port: int,
                  port: int) -> Iterator[ServerProcess]:
    """nsd -d, secondary for ``zones`` from 127.0.0.1@primary_port with TSIG."""
    nsd = nsd_path()
    assert nsd is not None
    rundir = Path(tempfile.mkdtemp(prefix="nsd-xfr-"))
    entries = "".join(
        f'zone:\n    name: "{z}"\n    zonefile: "{z}zone"\n'
        f"    allow-notify: 127.0.0.1 {KEY}\n"
        f"    request-xfr: 127.0.0.1@{primary_port} {KEY}\n" for z in zones)
    conf = rundir / "nsd.conf"
    conf.write_text(NSD_CONF.format(port=port, rundir=rundir, key=KEY, secret=SECRET,
                                    zones=entries))
    try:
        with process([nsd, "-d", "-c", str(conf)], port, zones[0], "nsd",
                     rundir / "nsd.log") as server:
            yield server
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


# ----------------------------------------------------------------------------- asking


def ask_other(port: int, query: dns.message.Message) -> dns.message.Message:
    """Ask another implementation over UDP (no dnslib cross-check of its reply: Knot
    may repeat an RR in the additional section, which is its business)."""
    data = udp_query(port, query.to_wire(), check=False)
    assert data is not None, f"no answer from port {port}"
    return dns.message.from_wire(data)


def answer(port: int, name: str, qtype: str = "A", **kw: object) -> tuple[str, list[str]]:
    """(rcode, sorted RDATA texts of the answer section)."""
    m = ask(port, make_query(name, qtype, **kw))  # type: ignore[arg-type]
    return (dns.rcode.to_text(m.rcode()),
            sorted(rd.to_text() for r in m.answer for rd in r))


def serial(port: int, origin: str) -> int | None:
    m = ask(port, make_query(origin, "SOA"))
    for rrset in m.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Poll ``check`` until true; the seconds it took (AssertionError on timeout)."""
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def metrics(server: ServerProcess) -> str:
    port = server.control_port()
    with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text (None when absent)."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if have == labels:
            return float(m.group(3))
    return None
