"""Shared helpers for the geodns interop, smoke and wire tests.

Import them as ``from tests.util import ...``.  Everything here talks only to
127.0.0.1 / ::1 and every blocking call has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dnslib

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
LOCALHOST = "127.0.0.1"
READY_TIMEOUT = 10.0


# --------------------------------------------------------------------------- ports


def free_port(host: str = LOCALHOST) -> int:
    """Return a port that is currently free for both UDP and TCP on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("could not find a port free for both UDP and TCP")


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- decoding


def _raw_counts(wire: bytes) -> tuple[int, int, int, int]:
    return struct.unpack("!HHHH", wire[4:12])


def dnslib_check(wire: bytes) -> dns.message.Message:
    """Decode ``wire`` with dnspython and, independently, with dnslib.

    Asserts that both decoders accept the message (no trailing garbage), and
    that the header counts and the (extended) rcode agree between the raw
    header, dnslib and dnspython.  Returns the dnspython message.
    """
    assert len(wire) >= 12, f"response shorter than a DNS header: {wire!r}"
    qd, an, ns, ar = _raw_counts(wire)
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=False)
    except Exception as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(
            f"dnspython cannot parse the response: {exc!r}; wire={wire.hex()}"
        ) from exc
    try:
        rec = dnslib.DNSRecord.parse(wire)
    except Exception as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(
            f"dnslib cannot parse the response: {exc!r}; wire={wire.hex()}"
        ) from exc

    # dnslib: parsed record lists against the raw header counts
    assert (len(rec.questions), len(rec.rr), len(rec.auth), len(rec.ar)) == (qd, an, ns, ar), (
        "dnslib section lengths disagree with the header counts"
    )
    # dnspython: it groups RRs into RRsets and pulls OPT/TSIG out of additional
    dp_an = sum(len(r) for r in msg.answer)
    dp_ns = sum(len(r) for r in msg.authority)
    dp_ar = sum(len(r) for r in msg.additional)
    if msg.opt is not None:
        dp_ar += 1
    if msg.tsig is not None:
        dp_ar += 1
    assert (len(msg.question), dp_an, dp_ns, dp_ar) == (qd, an, ns, ar), (
        f"dnspython counts {(len(msg.question), dp_an, dp_ns, dp_ar)} != header {(qd, an, ns, ar)}"
    )
    # rcode, including the extended bits carried in the OPT TTL
    lib_rcode = rec.header.rcode
    opts = [r for r in rec.ar if r.rtype == dnslib.QTYPE.OPT]
    assert len(opts) <= 1, "more than one OPT record"
    if opts:
        lib_rcode |= ((opts[0].ttl >> 24) & 0xFF) << 4
    assert lib_rcode == msg.rcode(), f"rcode: dnslib {lib_rcode} != dnspython {msg.rcode()}"
    assert rec.header.id == msg.id
    assert bool(rec.header.qr) == bool(msg.flags & dns.flags.QR)
    assert bool(rec.header.tc) == bool(msg.flags & dns.flags.TC)
    assert bool(rec.header.aa) == bool(msg.flags & dns.flags.AA)
    assert rec.header.opcode == msg.opcode()
    return msg


# --------------------------------------------------------------------------- transport


def udp_query(
    port: int,
    wire: bytes,
    timeout: float = 2.0,
    host: str = LOCALHOST,
    check: bool = True,
) -> bytes | None:
    """Send one UDP datagram; return the reply or None if nothing arrived in time.

    Replies are run through :func:`dnslib_check` unless ``check`` is False.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(wire)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            s.settimeout(remaining)
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            # ignore stray datagrams that do not carry our id (when we have one)
            if len(wire) >= 2 and len(data) >= 2 and data[:2] != wire[:2]:
                continue
            break
    if check:
        dnslib_check(data)
    return data


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def tcp_read_message(sock: socket.socket, check: bool = True) -> bytes:
    (length,) = struct.unpack("!H", recv_exact(sock, 2))
    data = recv_exact(sock, length)
    if check:
        dnslib_check(data)
    return data


def tcp_connect(port: int, host: str = LOCALHOST, timeout: float = 5.0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def tcp_query(
    port: int,
    wire: bytes,
    timeout: float = 5.0,
    host: str = LOCALHOST,
    check: bool = True,
) -> bytes:
    """Send one length-prefixed query over a fresh TCP connection; return the reply."""
    with tcp_connect(port, host, timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        return tcp_read_message(s, check=check)


def make_query(
    qname: str,
    qtype: str | int = "A",
    *,
    edns: int | None = None,
    payload: int = 1232,
    do: bool = False,
    rd: bool = False,
    options: Sequence[dns.edns.Option] = (),
    qclass: str | int = "IN",
) -> dns.message.QueryMessage:
    """A dnspython query; ``edns=None`` means no OPT record (unless ``do``/``options``)."""
    use_edns = edns if edns is not None else (0 if (do or options) else -1)
    q = dns.message.make_query(
        qname,
        qtype,
        rdclass=qclass,
        use_edns=use_edns,
        payload=payload,
        want_dnssec=do,
        options=list(options) or None,
    )
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def ask(
    port: int,
    query: dns.message.Message,
    *,
    tcp: bool = False,
    timeout: float = 3.0,
    host: str = LOCALHOST,
) -> dns.message.Message:
    """Send a dnspython query over UDP or TCP and return the parsed (and dnslib-checked) reply."""
    wire = query.to_wire()
    if tcp:
        data = tcp_query(port, wire, timeout=timeout, host=host)
    else:
        got = udp_query(port, wire, timeout=timeout, host=host)
        assert got is not None, f"no UDP answer from {host}:{port} for {query.question}"
        data = got
    msg = dns.message.from_wire(data)
    assert msg.id == query.id
    return msg


# --------------------------------------------------------------------------- processes


def zone_origin(path: Path) -> str:
    """The origin geodns derives for a zone file: first $ORIGIN, else file name minus .zone."""
    for line in path.read_text().splitlines():
        m = re.match(r"^\$ORIGIN\s+(\S+)", line, re.IGNORECASE)
        if m:
            origin = m.group(1)
            return origin if origin.endswith(".") else origin + "."
    name = path.name
    if name.endswith(".zone"):
        name = name[: -len(".zone")]
    return name if name.endswith(".") else name + "."


def zone_origins(zones_dir: Path) -> list[str]:
    return [zone_origin(p) for p in sorted(Path(zones_dir).iterdir()) if p.is_file()]


def geodns_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "geodns", *args]


def geodns_available() -> bool:
    return (REPO_ROOT / "geodns" / "cli.py").exists() or (
        REPO_ROOT / "geodns" / "__main__.py"
    ).exists()


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate ``proc`` (and its process group), escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=grace)


def wait_ready(
    port: int,
    qname: str,
    proc: subprocess.Popen,
    timeout: float = READY_TIMEOUT,
    host: str = LOCALHOST,
) -> bool:
    """Poll with a UDP SOA query (any answer counts) and a TCP connect until both work."""
    q = make_query(qname, "SOA").to_wire()
    deadline = time.monotonic() + timeout
    udp_ok = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if not udp_ok:
            udp_ok = udp_query(port, q, timeout=0.2, host=host, check=False) is not None
        if udp_ok:
            try:
                with tcp_connect(port, host, timeout=0.5):
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


class ServerProcess:
    """A running server: ``.port``, ``.proc``, ``.stderr_text()``."""

    def __init__(self, proc: subprocess.Popen, port: int, stderr_path: Path, host: str):
        self.proc = proc
        self.port = port
        self.host = host
        self._stderr_path = stderr_path

    def control_port(self, timeout: float = 5.0) -> int:
        """Port of the control API, from its start-up log line."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(r"control API on http://\S+?:(\d+)/", self.stderr_text())
            if m:
                return int(m.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError(f"no control API line in the log:\n{self.stderr_text()}")
            time.sleep(0.05)

    def stderr_text(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager
def run_server(
    argv_for_port,
    ready_name: str,
    *,
    name: str = "server",
    host: str = LOCALHOST,
    attempts: int = 3,
    cwd: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Start ``argv_for_port(port)`` on a free port and wait until it answers.

    Retries on a fresh port if the process dies at start (e.g. a port race).
    The process is always stopped on exit.
    """
    last_err = ""
    for _ in range(attempts):
        port = free_port(host)
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        stderr_path = tmpdir / "stderr.log"
        with open(stderr_path, "wb") as errf:
            proc = subprocess.Popen(
                argv_for_port(port),
                stdin=subprocess.DEVNULL,
                stdout=errf,
                stderr=errf,
                cwd=cwd or REPO_ROOT,
                start_new_session=True,
            )
        server = ServerProcess(proc, port, stderr_path, host)
        try:
            if wait_ready(port, ready_name, proc, timeout=ready_timeout, host=host):
                yield server
                return
            last_err = (
                f"{name} not ready on {host}:{port} within {ready_timeout}s "
                f"(exit code {proc.poll()}):\n{server.stderr_text()[-4000:]}"
            )
            if proc.poll() is None:
                # alive but not answering: retrying will not help
                break
        finally:
            stop_process(proc)
            shutil.rmtree(tmpdir, ignore_errors=True)
    raise RuntimeError(last_err)


@contextlib.contextmanager
def geodns_server(
    zones_dir: Path | str,
    extra_args: Sequence[str] = (),
    *,
    host: str = LOCALHOST,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Run ``python -m geodns serve --zones DIR --listen HOST:PORT [extra_args]``."""
    zones_dir = Path(zones_dir)
    origins = zone_origins(zones_dir)
    ready_name = origins[0] if origins else "."
    listen_host = f"[{host}]" if ":" in host else host

    # The control listener defaults to 127.0.0.1:8053; tests get a random port instead
    # (ServerProcess.control_port() reads it from the log) so servers never collide.
    http_args = () if "--http" in extra_args else ("--http", f"{LOCALHOST}:0")
    # Without --config, serve would pick up ./geodns.toml (the repo's: tests run from
    # the checkout); these servers are zones-only unless a test passes a config.
    if "--config" not in extra_args and "--no-config" not in extra_args:
        http_args = (*http_args, "--no-config")

    def argv(port: int) -> list[str]:
        return geodns_cmd(
            "serve", "--zones", str(zones_dir), "--listen", f"{listen_host}:{port}",
            *http_args, *extra_args
        )

    with run_server(
        argv, ready_name, name="geodns", host=host, ready_timeout=ready_timeout
    ) as server:
        # listeners are bound one after the other: wait for the extra ones too
        for extra_host, extra_port in _extra_listeners(extra_args):
            if not wait_ready(
                extra_port, ready_name, server.proc, timeout=ready_timeout, host=extra_host
            ):
                raise RuntimeError(
                    f"geodns not ready on [{extra_host}]:{extra_port}:\n"
                    f"{server.stderr_text()[-4000:]}"
                )
        yield server


def _extra_listeners(args: Sequence[str]) -> list[tuple[str, int]]:
    """(host, port) of every ``--listen ADDR:PORT`` / ``--listen=ADDR:PORT`` in ``args``."""
    values = []
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--listen" and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--listen="):
            values.append(arg.split("=", 1)[1])
    out = []
    for v in values:
        m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", v)
        if m:
            h, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            out.append((h, int(port)))
    return out


# --------------------------------------------------------------------------- raw packets


def raw_header(
    qid: int = 0x1234,
    *,
    qr: int = 0,
    opcode: int = 0,
    aa: int = 0,
    tc: int = 0,
    rd: int = 0,
    ra: int = 0,
    z: int = 0,
    rcode: int = 0,
    qd: int = 1,
    an: int = 0,
    ns: int = 0,
    ar: int = 0,
) -> bytes:
    flags = (
        (qr << 15)
        | (opcode << 11)
        | (aa << 10)
        | (tc << 9)
        | (rd << 8)
        | (ra << 7)
        | (z << 4)
        | rcode
    )
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a name, preserving case."""
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode()
            out += bytes([len(b)]) + b
    return out + b"\x00"


def raw_question(name: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return encode_name(name) + struct.pack("!HH", qtype, qclass)


def raw_opt(
    payload: int = 1232,
    *,
    ext_rcode: int = 0,
    version: int = 0,
    do: bool = False,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    rdata = b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def ecs_option(family: int, source: int, scope: int, address: bytes) -> tuple[int, bytes]:
    return (8, struct.pack("!HBB", family, source, scope) + address)


def header_fields(wire: bytes) -> dict[str, int]:
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
    return {
        "id": qid,
        "qr": flags >> 15 & 1,
        "opcode": flags >> 11 & 0xF,
        "aa": flags >> 10 & 1,
        "tc": flags >> 9 & 1,
        "rd": flags >> 8 & 1,
        "ra": flags >> 7 & 1,
        "z": flags >> 4 & 7,
        "rcode": flags & 0xF,
        "qd": qd,
        "an": an,
        "ns": ns,
        "ar": ar,
    }


def rcode_text(msg: dns.message.Message) -> str:
    return dns.rcode.to_text(msg.rcode())


# --------------------------------------------------------------------------- knotd

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


# --------------------------------------------------------------------------- gdnsd

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
