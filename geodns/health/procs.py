"""Keep an external check command contained: bounded output, nothing left running.

A check command is an operator's script, and scripts background children, call
``setsid``, or spew output.  None of that may cost geodns memory, hang a probe
or leave processes behind, so each run:

* starts in its own session (its process group id is its pid) with
  ``PR_SET_PDEATHSIG`` = SIGKILL, so the command dies with geodns;
* carries a random marker in its environment (``GEODNS_CHECK_RUN``), which its
  descendants inherit even when they leave the process group;
* has its stderr read through a pipe the asyncio subprocess transport does not
  own, so the exit status is known when the command exits, not when the last
  child holding the pipe closes it; at most :data:`READ_LIMIT` bytes are read and
  only the last :data:`KEEP` are kept, then the pipe is closed (a writer that
  keeps going gets SIGPIPE);
* ends with its process group killed, then every process still carrying the
  marker (Linux ``/proc``), repeated until a sweep finds none.

A descendant that both leaves the session and clears its environment escapes;
only a cgroup would catch that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["KEEP", "MARKER", "READ_LIMIT", "CommandResult", "kill_marked", "run_contained"]

READ_LIMIT: Final = 16 * 1024  # stderr bytes read at most; then the pipe is closed
KEEP: Final = 1024  # stderr bytes kept (the tail) for the probe's reason
MARKER: Final = "GEODNS_CHECK_RUN"
_SWEEP_ROUNDS: Final = 5
_PR_SET_PDEATHSIG: Final = 1

_prctl: Any
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when geodns goes away."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class CommandResult:
    """Exit status (negative: killed by that signal), the kept tail of stderr, and
    whether stderr went over :data:`READ_LIMIT` (then we closed the pipe)."""

    __slots__ = ("code", "overflow", "stderr")

    def __init__(self, code: int, stderr: bytes, overflow: bool = False) -> None:
        self.code = code
        self.stderr = stderr
        self.overflow = overflow


class _BoundedPipe:
    """Reads a non-blocking pipe on the loop; keeps a tail, stops after a limit."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd: int | None = fd
        self.loop = loop
        self.tail = bytearray()
        self.read = 0
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        self.drain()

    def drain(self) -> None:
        """Read what is there now (up to the limit); close on EOF or at the limit."""
        while self.fd is not None:
            try:
                chunk = os.read(self.fd, min(4096, READ_LIMIT - self.read))
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            self.read += len(chunk)
            self.tail += chunk
            del self.tail[:-KEEP]
            if self.read >= READ_LIMIT:
                self.close()

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


async def run_contained(argv: Sequence[str], env: Mapping[str, str]) -> CommandResult:
    """Run ``argv`` to its exit (the caller bounds the time by cancelling us); whatever
    happens, the command's whole process tree is killed before this returns."""
    loop = asyncio.get_running_loop()
    token = secrets.token_hex(12)
    env = {**env, MARKER: token}
    rfd, wfd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=wfd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    except BaseException:
        os.close(rfd)
        raise
    finally:
        os.close(wfd)
    pipe = _BoundedPipe(rfd, loop)
    try:
        code = await proc.wait()
        pipe.drain()  # what was written just before the exit
        return CommandResult(code, bytes(pipe.tail), pipe.read >= READ_LIMIT)
    finally:
        pipe.close()
        await asyncio.shield(_reap(proc, token))


async def _reap(proc: asyncio.subprocess.Process, token: str) -> None:
    """Kill the group (the command if still running, and every child it left in its
    group), reap the command, then sweep for marked processes that left the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()
    with contextlib.suppress(Exception):
        await asyncio.get_running_loop().run_in_executor(None, kill_marked, token)


def kill_marked(token: str, proc_dir: str = "/proc") -> int:
    """SIGKILL every process whose environment carries ``MARKER=token``; repeated
    until a sweep finds none, since one may fork while we look.  Returns how many."""
    needle = f"{MARKER}={token}".encode() + b"\0"
    uid = os.getuid()
    me = os.getpid()
    killed = 0
    for _ in range(_SWEEP_ROUNDS):
        found = 0
        try:
            entries = os.listdir(proc_dir)
        except OSError:
            return killed
        for entry in entries:
            if not entry.isdigit() or int(entry) == me:
                continue
            path = Path(proc_dir, entry)
            try:
                if path.stat().st_uid != uid:
                    continue
                environ = (path / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ or environ.endswith(needle[:-1]):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
        killed += found
        if not found:
            break
        time.sleep(0.01)  # let the killed ones go before looking again
    return killed
