"""Running as a system service: sd_notify, dropping root, bind errors that say what to do.

systemd's notify protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket
named by ``$NOTIFY_SOCKET`` (sd_notify(3)); a dozen lines of our own do it, so no
library (and no libsystemd) is needed.  Everything here is a no-op outside systemd.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import socket
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from geodns.logs import event

__all__ = [
    "BindError",
    "Notifier",
    "Service",
    "bind_error",
    "check_user",
    "drop_privileges",
    "version",
]

log = logging.getLogger("geodns")

UNIT_HINT: Final = "contrib/systemd/geodns.service"


def version() -> str:
    """The installed package version (``0.1.0``), or ``unknown`` from a bare checkout."""
    try:
        return metadata.version("geodns")
    except metadata.PackageNotFoundError:
        return "unknown"


class Notifier:
    """sd_notify(3) without libsystemd: silent when ``$NOTIFY_SOCKET`` is not set."""

    def __init__(self, path: str | None = None) -> None:
        path = os.environ.get("NOTIFY_SOCKET") if path is None else path
        self.address: str | None = None
        if path:
            # "@name" is an abstract socket (a leading NUL byte on the wire).
            self.address = "\0" + path[1:] if path.startswith("@") else path

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False (logged once) if it fails."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall("\n".join(lines).encode())
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s (systemd will not see our state)",
                        self.address.replace("\0", "@"), exc)
            self.address = None  # do not repeat the warning for every state
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) match the reload it asked for.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")


@dataclass(frozen=True, slots=True)
class Account:
    """Who to become after binding (resolved before anything is bound)."""

    name: str
    uid: int
    gid: int


def check_user(name: str) -> Account:
    """Resolve ``--user NAME``; ValueError says why it cannot work (not root, no user)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"--user {name}: no such user (create it, e.g. `useradd --system "
                         f"--no-create-home --shell /usr/sbin/nologin {name}`)") from None
    if os.geteuid() != 0:
        raise ValueError(
            f"--user {name}: only root can switch users (running as uid {os.geteuid()}). "
            f"Either start geodns as root with --user, or start it as {name} directly and "
            f"let systemd grant the port (AmbientCapabilities=CAP_NET_BIND_SERVICE, see "
            f"{UNIT_HINT}), or listen on a port >= 1024")
    return Account(name, entry.pw_uid, entry.pw_gid)


def drop_privileges(account: Account) -> None:
    """Become ``account`` for good: supplementary groups, then group, then user."""
    os.setgroups(os.getgrouplist(account.name, account.gid))
    os.setgid(account.gid)
    os.setuid(account.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - would mean the kernel ignored setuid
        raise RuntimeError("dropping privileges failed: could regain uid 0")
    group = grp.getgrgid(account.gid).gr_name
    log.info("dropped privileges: now running as user %s, group %s", account.name, group,
             extra=event("privileges", user=account.name, uid=account.uid, group=group,
                         gid=account.gid))


class BindError(OSError):
    """A listener that cannot bind, with the address and what to do about it."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_error(exc: OSError, host: str, port: int, what: str) -> BindError:
    """Turn a bare ``[Errno 13] Permission denied`` into a sentence an operator can act on.

    ``what`` names the listener: ``udp``, ``tcp`` or ``control API``.
    """
    where = f"cannot listen on {_where(host, port)} ({what})"
    code = exc.errno
    if code == errno.EACCES and port < 1024:
        text = (f"{where}: permission denied: ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE. Run geodns from the systemd unit ({UNIT_HINT}: "
                "AmbientCapabilities=CAP_NET_BIND_SERVICE), or start it as root with "
                "--user NAME to drop privileges after binding, or use a port >= 1024 "
                "(e.g. --listen 127.0.0.1:5353)")
    elif code == errno.EADDRINUSE:
        proto = "u" if what == "udp" else "t"
        text = (f"{where}: the address is already in use by another program "
                f"(see which with `ss -l{proto}np 'sport = :{port}'`); stop it or choose "
                "another port")
    elif code == errno.EADDRNOTAVAIL:
        text = (f"{where}: {host} is not an address of this machine (check `ip addr` or "
                "the listen setting)")
    elif code == errno.EACCES:
        text = f"{where}: permission denied ({exc.strerror})"
    else:
        text = f"{where}: {exc.strerror or exc}"
    err = BindError(text)
    err.errno = code  # callers may still branch on it; str(err) stays the sentence
    return err


class Service:
    """The server's hooks into the service manager and the process's identity.

    The server calls :meth:`bound` once every DNS socket is bound (drop root),
    :meth:`ready` when it answers, :meth:`reloading`/:meth:`reloaded` around every
    reload and :meth:`stopping` when it starts shutting down.
    """

    def __init__(self, account: Account | None = None,
                 notifier: Notifier | None = None) -> None:
        self.account = account
        self.notifier = notifier or Notifier()

    def bound(self) -> None:
        if self.account is not None:
            drop_privileges(self.account)

    def ready(self, status: str) -> None:
        self.notifier.ready(status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, ok: bool, status: str) -> None:
        self.notifier.ready(status if ok else f"reload failed; {status}")

    def stopping(self) -> None:
        self.notifier.stopping()
