"""Replacing a running server without a gap (``geodns serve --replace``).

The running server listens on a Unix socket named after its first DNS endpoint
(:func:`geodns.workers.sockets.takeover_path`).  A new server started with
``--replace`` connects, says ``takeover``, and receives every listening socket
(DNS and control API) by SCM_RIGHTS.  It loads its zones and starts answering on
those same sockets while the old server still answers on them too; once it is
ready it takes over the Unix socket's name and says ``ready``.  The old server
then stops reading, finishes its open TCP connections and exits.  A new server
that fails before ``ready`` simply exits: the old one never stopped.

``ping`` answers the pid, so a plain ``geodns serve`` can refuse to start a second
server on ports the first one serves (SO_REUSEPORT would otherwise let it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

from geodns.workers.sockets import Listener, receive_listeners, send_listeners

log = logging.getLogger("geodns.workers")

READY_TIMEOUT: Final = 900.0  # a successor may compile maps for a while


class TakeoverError(RuntimeError):
    """``--replace`` found nothing to replace, or the old server broke off."""


def running_pid(path: Path) -> int | None:
    """The pid of the server answering on ``path``, or None (a stale file is removed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2.0)
            conn.connect(str(path))
            conn.sendall(b"ping\n")
            reply = conn.recv(64)
    except FileNotFoundError:
        return None
    except ConnectionRefusedError:
        with contextlib.suppress(OSError):
            if path.is_socket():
                path.unlink()  # nobody listens: left behind by a killed server
        return None
    except TimeoutError:
        return -1  # there, but not answering: still a server we must not share ports with
    except OSError:
        return None
    try:
        return int(reply.strip() or b"0") or None
    except ValueError:
        return None


class Successor:
    """The new server's side: the old server's sockets, and ``ready`` when serving."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.conn.settimeout(30.0)
            self.conn.connect(str(path))
            self.conn.sendall(b"takeover\n")
            self.pid, self.listeners = receive_listeners(self.conn)
        except FileNotFoundError:
            self.conn.close()
            raise TakeoverError(f"--replace: no running geodns answers on {path} (start "
                                "without --replace)") from None
        except OSError as exc:
            self.conn.close()
            raise TakeoverError(f"--replace: cannot take the sockets of the server on "
                                f"{path}: {exc}") from None
        log.info("took over %d sockets from geodns pid %d", len(self.listeners), self.pid)

    def ready(self) -> None:
        """We serve: the old server may drain and exit."""
        try:
            self.conn.sendall(b"ready\n")
        except OSError as exc:
            log.warning("could not tell the old server (pid %d) to stop: %s", self.pid, exc)
        finally:
            self.conn.close()
        log.info("replaced geodns pid %d; it drains and exits", self.pid)


class TakeoverPoint:
    """The running server's side: ``listeners`` for a successor, ``on_replaced`` once
    it serves them."""

    def __init__(self, path: Path, listeners: Callable[[], list[Listener]],
                 on_replaced: Callable[[], None]) -> None:
        self.path = path
        self.listeners = listeners
        self.on_replaced = on_replaced
        self.sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Listen on a fresh name, then move it over ``path`` (replacing an old one's)."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(4)
            os.replace(tmp, self.path)
        except OSError as exc:
            sock.close()
            log.warning("no takeover socket at %s (%s): --replace cannot take over from "
                        "this server", self.path, exc)
            return
        sock.setblocking(False)
        self.sock = sock
        self._inode = os.stat(self.path).st_ino
        self._task = asyncio.get_running_loop().create_task(self._accept(),
                                                            name="geodns-takeover")

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            conn.setblocking(True)
            loop.run_in_executor(None, self._serve, conn, loop)

    def _serve(self, conn: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """One client, in a thread (blocking I/O with timeouts)."""
        with conn:
            try:
                conn.settimeout(5.0)
                line = _line(conn)
                if line == b"ping\n":
                    conn.sendall(f"{os.getpid()}\n".encode())
                    return
                if line != b"takeover\n":
                    return
                listeners = asyncio.run_coroutine_threadsafe(self._snapshot(), loop).result()
                send_listeners(conn, listeners, os.getpid())
                log.info("a new server took copies of our %d sockets; serving until it is "
                         "ready", len(listeners))
                conn.settimeout(READY_TIMEOUT)
                answer = conn.recv(16)
            except OSError as exc:
                log.warning("takeover: %s", exc)
                return
            if answer.startswith(b"ready"):
                loop.call_soon_threadsafe(self.on_replaced)
            else:
                log.warning("the new server went away before it was ready; still serving")

    async def _snapshot(self) -> list[Listener]:
        return self.listeners()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):  # only our own name (a successor's stays)
                if os.stat(self.path).st_ino == self._inode:
                    self.path.unlink()


def _line(conn: socket.socket, limit: int = 64) -> bytes:
    """One short line, read a byte at a time (nothing after it is consumed)."""
    out = b""
    while len(out) < limit and not out.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        out += byte
    return out
