"""Running as a service: the shipped systemd unit's command line, sd_notify, --user,
--version, log options and bind errors, with real processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geodns.service import Notifier, bind_error
from tests.helpers.net import free_port
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.queries import make_query, udp_query

UNIT = REPO_ROOT / "contrib" / "systemd" / "geodns.service"
GEODNS = Path(sys.executable).parent / "geodns"
IS_ROOT = os.geteuid() == 0
NOBODY = 65534

pytestmark = pytest.mark.timeout(90)


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """KEY -> values of the unit's [Service] section (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@contextlib.contextmanager
def open_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory the unprivileged user can read and write (tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with open_dir("geodns-unit-") as d:
        yield d


@pytest.fixture(scope="module")
def cache_directory() -> Iterator[Path]:
    """What ``CacheDirectory=geodns`` gives the unit: a cache the service user can write
    (root's ``~/.cache`` is out of reach for nobody), shared by this module's servers so
    that only the first one reads the GeoIP database's networks from scratch."""
    with open_dir("geodns-cache-") as d:
        yield d


def service_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment systemd gives the unit (``$CACHE_DIRECTORY``), plus ``extra``."""
    return {**os.environ, "CACHE_DIRECTORY": str(cache), **extra}


def etc_config(directory: Path) -> Path:
    """/etc/geodns/geodns.toml stand-in: the shipped config, zones by absolute path."""
    text = (REPO_ROOT / "geodns.toml").read_text()
    text = text.replace('zones = "zones"', f'zones = "{REPO_ROOT / "zones"}"')
    path = directory / "geodns.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


class NotifySocket:
    """What systemd listens on: a Unix datagram socket in ``$NOTIFY_SOCKET``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.path.chmod(0o777)  # the service may run as another user

    def wait_for(self, key: str, timeout: float = 60.0) -> dict[str, str]:
        """The next message carrying ``key`` (e.g. READY=1), as a dict.  The default
        wait is generous (systemd's own start timeout is 90 s): a first start reads
        the GeoIP database's networks, which on a busy 2-core machine takes a while."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} from the service within {timeout}s")
            self.sock.settimeout(left)
            data = self.sock.recv(4096).decode()
            msg = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            if key in data.splitlines():
                return msg

    def close(self) -> None:
        self.sock.close()


def answers(port: int, host: str = "127.0.0.1") -> bool:
    q = make_query("example.com.", "SOA").to_wire()
    return udp_query(port, q, timeout=0.5, host=host, check=False) is not None


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def random_loopback() -> str:
    """A random 127/8 address, so binding port 53 there collides with nothing."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


SETPRIV = shutil.which("setpriv")
CAN_SWITCH = IS_ROOT and SETPRIV is not None


def setpriv(*caps: str) -> list[str]:
    """Become nobody the way systemd's User= + AmbientCapabilities= does (util-linux)."""
    if not CAN_SWITCH:
        pytest.skip("needs root and setpriv (util-linux) to become an unprivileged user")
    assert SETPRIV is not None
    argv = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if caps:
        argv += [f"--inh-caps=+{','.join(caps)}", f"--ambient-caps=+{','.join(caps)}"]
    return [*argv, "--"]


# --------------------------------------------------------------------------- the unit


def test_unit_declares_notify_reload_user_capability_and_hardening() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["User"] == ["geodns"] and s["Group"] == ["geodns"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                "RestrictAddressFamilies", "SystemCallFilter", "MemoryDenyWriteExecute"):
        assert key in s, key
    argv = shlex.split(s["ExecStart"][0])
    assert argv[1:] == ["serve", "--config", "/etc/geodns/geodns.toml"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    # The same unit, with ExecStart pointing at this checkout's geodns (verify checks
    # that the binary exists and is executable).
    argv0 = shlex.split(unit_settings()["ExecStart"][0])[0]
    unit = tmp_path / "geodns.service"
    unit.write_text(UNIT.read_text().replace(argv0, str(GEODNS)))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if "geodns" in line]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def test_unit_command_line_runs_notifies_reloads_and_stops(shared_dir: Path,
                                                           cache_directory: Path) -> None:
    """ExecStart as written (config path and binary adapted, listeners on a free
    loopback port), as an unprivileged user with the unit's ambient capability when we
    can switch to one, with systemd's notify socket: READY=1, then ExecReload gives
    RELOADING=1 and READY=1 again, and SIGTERM gives STOPPING=1 and a clean exit."""
    settings = unit_settings()
    argv = shlex.split(settings["ExecStart"][0])
    config = etc_config(shared_dir)
    argv = [str(GEODNS) if i == 0 else str(config) if a == "/etc/geodns/geodns.toml" else a
            for i, a in enumerate(argv)]
    port = free_port()
    argv += ["--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"]
    notify = NotifySocket(shared_dir)
    env = service_env(cache_directory, NOTIFY_SOCKET=str(notify.path))
    if CAN_SWITCH:  # User= and AmbientCapabilities= as in the unit
        caps = [c.removeprefix("CAP_").lower() for c in settings["AmbientCapabilities"]]
        argv = setpriv(*caps) + argv
    try:
        with process(argv, env=env, cwd=shared_dir) as proc:
            ready = notify.wait_for("READY=1")
            assert ready["MAINPID"] == str(proc.pid)  # setpriv execs: same pid
            assert ready["STATUS"] == "serving 1 zones"
            assert answers(port)
            if CAN_SWITCH:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                assert re.search(rf"^Uid:\s+{NOBODY}\s", status, re.M), status
            reload_cmd = settings["ExecReload"][0].replace("$MAINPID", str(proc.pid))
            subprocess.run(shlex.split(reload_cmd), check=True, timeout=10)
            reloading = notify.wait_for("RELOADING=1")
            assert int(reloading["MONOTONIC_USEC"]) > 0
            assert notify.wait_for("READY=1")["STATUS"] == "serving 1 zones"
            proc.send_signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1")
            assert proc.wait(timeout=15) == 0
    finally:
        notify.close()


def test_ambient_capability_binds_port_53_without_root(shared_dir: Path,
                                                        cache_directory: Path) -> None:
    """What User= plus AmbientCapabilities=CAP_NET_BIND_SERVICE give the unit: a non-root
    process that binds port 53. Without the capability, the error names the address and
    the fix."""
    config = etc_config(shared_dir)
    host = random_loopback()
    serve = [str(GEODNS), "serve", "--config", str(config), "--listen", f"{host}:53",
             "--http", "127.0.0.1:0"]
    with process(setpriv("net_bind_service") + serve, env=service_env(cache_directory),
                 cwd=shared_dir) as proc:
        deadline = time.monotonic() + 60
        while not answers(53, host):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "no answer on port 53"
            time.sleep(0.1)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{NOBODY}\s", status, re.M), status
    r = subprocess.run(setpriv() + serve, capture_output=True, text=True, timeout=60,
                       env=service_env(cache_directory), cwd=shared_dir)
    assert r.returncode == 1
    assert f"cannot listen on {host}:53 (udp): permission denied" in r.stderr, r.stderr
    assert "CAP_NET_BIND_SERVICE" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- --user


@pytest.mark.skipif(not IS_ROOT, reason="dropping privileges needs root")
def test_user_drops_privileges_after_binding_port_53(shared_dir: Path) -> None:
    config = etc_config(shared_dir)
    host = random_loopback()
    argv = [str(GEODNS), "serve", "--config", str(config), "--user", "nobody", "--listen",
            f"{host}:53", "--http", "127.0.0.1:0"]
    with process(argv, cwd=shared_dir) as proc:
        deadline = time.monotonic() + 60
        while not answers(53, host):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "no answer on port 53"
            time.sleep(0.1)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        for field in ("Uid", "Gid"):
            assert re.search(rf"^{field}:\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}$",
                             status, re.M), status
        assert re.search(rf"^Groups:\s*{NOBODY}\s*$", status, re.M), status  # nobody's own
        proc.send_signal(signal.SIGHUP)  # still reloads as nobody (files are readable)
        time.sleep(1.0)
        assert answers(53, host)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert "dropped privileges: now running as user nobody" in out
    assert "reload (SIGHUP): serving 1 zones" in out


def test_user_refused_clearly_when_not_root() -> None:
    port = free_port()
    argv = [str(GEODNS), "serve", "--no-config", "--zones", str(DATA_DIR / "interop"),
            "--user", "nobody", "--listen", f"127.0.0.1:{port}"]
    if IS_ROOT:
        argv = setpriv() + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "--user nobody: only root can switch users" in r.stderr, r.stderr
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_user_is_refused() -> None:
    r = subprocess.run([str(GEODNS), "serve", "--no-config", "--user", "no-such-user-x"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "--user no-such-user-x: no such user" in r.stderr, r.stderr


# --------------------------------------------------------------------------- errors


def test_address_in_use_names_the_address() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        r = subprocess.run([str(GEODNS), "serve", "--no-config", "--zones",
                            str(DATA_DIR / "interop"), "--listen", f"127.0.0.1:{port}",
                            "--http", "off"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert (f"cannot listen on 127.0.0.1:{port} (udp): the address is already in use"
            in r.stderr), r.stderr
    assert f"ss -lunp 'sport = :{port}'" in r.stderr


def test_bind_error_messages() -> None:
    import errno

    denied = bind_error(OSError(errno.EACCES, "Permission denied"), "::", 53, "udp")
    assert str(denied).startswith("cannot listen on [::]:53 (udp): permission denied: "
                                  "ports below 1024 need root or CAP_NET_BIND_SERVICE")
    assert "contrib/systemd/geodns.service" in str(denied) and "--user" in str(denied)
    assert denied.errno == errno.EACCES
    gone = bind_error(OSError(errno.EADDRNOTAVAIL, "x"), "192.0.2.1", 53, "tcp")
    assert "192.0.2.1 is not an address of this machine" in str(gone)
    control = bind_error(OSError(errno.EADDRINUSE, "x"), "127.0.0.1", 8053, "control API")
    assert "127.0.0.1:8053 (control API)" in str(control) and "ss -ltnp" in str(control)


def test_version() -> None:
    from geodns.service import version

    r = subprocess.run([str(GEODNS), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.strip() == f"geodns {version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version())


def test_bad_log_level_is_a_clear_usage_error() -> None:
    r = subprocess.run([str(GEODNS), "serve", "--log-level", "verbose"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert "argument --log-level: invalid choice: 'verbose'" in r.stderr, r.stderr
    assert "debug" in r.stderr and "Traceback" not in r.stderr


def test_json_logs_one_event_per_line_with_stable_keys(shared_dir: Path) -> None:
    config = etc_config(shared_dir)
    port = free_port()
    argv = [str(GEODNS), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "DEBUG"]
    notify = NotifySocket(shared_dir)
    try:
        with process(argv, env={**os.environ, "NOTIFY_SOCKET": str(notify.path)}) as proc:
            notify.wait_for("READY=1")
            proc.send_signal(signal.SIGHUP)
            notify.wait_for("RELOADING=1")
            notify.wait_for("READY=1")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            out = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        notify.close()
    lines = [json.loads(line) for line in out.splitlines()]  # every line is one object
    for rec in lines:
        assert {"time", "level", "logger", "event", "msg"} <= rec.keys(), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    reloads = [r for r in lines if r["event"] == "reload"]
    assert [(r["ok"], r["reason"]) for r in reloads] == [(True, "start"), (True, "SIGHUP")]
    assert reloads[1]["zones"] == {"example.com.": 2026112101}
    start = next(r for r in lines if r["event"] == "start")
    assert start["config"] == str(config) and start["config_source"] == "--config"
    geo = next(r for r in lines if r["event"] == "geoip")
    assert geo["type"] == "GeoLite2-City" and geo["built"] == "2018-07-03"


def test_notifier_is_silent_without_systemd_and_speaks_abstract_sockets() -> None:
    assert not Notifier("").enabled
    assert Notifier("").send("READY=1") is False
    name = f"geodns-test-{os.getpid()}-{random.randint(0, 1 << 30)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        n = Notifier("@" + name)
        n.stopping()
        assert s.recv(1024).decode().splitlines() == ["STOPPING=1", "STATUS=stopping"]
