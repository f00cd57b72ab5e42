"""The pipe between the supervisor and one child process: framed pickled messages.

Both ends are our own code started from the same installation, so pickle is the
honest codec (health snapshots, zone stores and counters are plain Python objects);
nothing outside the node ever writes to a channel (a socketpair inherited by fd).
A message is a tuple whose first item names it; requests that expect a reply carry
an id the reply echoes (:meth:`Channel.request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import itertools
import logging
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any, Final

log = logging.getLogger("geodns.workers")

HEADER: Final = struct.Struct("!Q")
MAX_MESSAGE: Final = 8 << 30  # a zone store of a few GB still fits; more is a bug


def readonly(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(d)


def _proxy(m: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return readonly, (dict(m),)


copyreg.pickle(MappingProxyType, _proxy)  # the config's read-only tables travel too

Handler = Callable[[tuple[Any, ...]], Awaitable[None] | None]


class ChannelClosed(ConnectionError):
    """The other end went away (it exited or was killed)."""


class Channel:
    """One end of a socketpair; ``on_message`` gets every message that is not a reply
    (in order; a coroutine it returns runs as its own task, so it may wait)."""

    def __init__(self, sock: socket.socket, on_message: Handler, name: str = "") -> None:
        self.sock = sock
        self.on_message = on_message
        self.name = name
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    async def start(self) -> None:
        self.sock.setblocking(False)
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self.sock,
                                                                      limit=1 << 20)
        self._task = asyncio.get_running_loop().create_task(self._read(),
                                                            name=f"channel-{self.name}")

    def send(self, *message: Any) -> None:
        """Queue one message (never blocks; a dead peer is noticed by the reader)."""
        writer = self.writer
        if writer is None or writer.is_closing():
            raise ChannelClosed(f"channel to {self.name} is closed")
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        writer.write(HEADER.pack(len(body)))
        writer.write(body)

    async def drain(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def request(self, kind: str, *args: Any, timeout: float = 10.0) -> Any:
        """Send ``(kind, id, *args)`` and wait for ``("reply", id, value)``."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            self.send(kind, rid, *args)
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._waiting.pop(rid, None)

    def reply(self, rid: int, value: Any) -> None:
        with contextlib.suppress(ChannelClosed):
            self.send("reply", rid, value)

    async def _read(self) -> None:
        reader = self.reader
        assert reader is not None
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                (size,) = HEADER.unpack(head)
                if size > MAX_MESSAGE:
                    raise ValueError(f"message of {size} bytes")
                message = pickle.loads(await reader.readexactly(size))
                if message[0] == "reply":
                    fut = self._waiting.get(message[1])
                    if fut is not None and not fut.done():
                        fut.set_result(message[2])
                    continue
                try:
                    result = self.on_message(message)
                    if result is not None:  # runs beside the reader: replies keep flowing
                        self._spawn(result, message[0])
                except Exception:
                    log.exception("%s: message %r failed", self.name, message[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: channel broken", self.name)
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ChannelClosed(f"{self.name} went away"))
            self.closed.set()
            if self.writer is not None:
                self.writer.close()

    def _spawn(self, work: Awaitable[None], kind: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("%s: message %r failed", self.name, kind)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.closed.set()
