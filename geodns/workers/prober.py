"""Health probing in a process of its own.

With workers, the supervisor's :class:`~geodns.health.monitor.HealthMonitor` keeps
the schedule, the rise/fall trackers and the overrides, and publishes snapshots;
the probes themselves (HTTP, TCP, DNS, external commands) run here, once per node.
A prober that dies is restarted; meanwhile probes are skipped (no result, so no
state changes) and the workers keep the last snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from geodns.config.model import Check
from geodns.health.checks import ProbeResult, make_session, run_check
from geodns.health.monitor import ProbeSkipped
from geodns.workers.channel import Channel, ChannelClosed

log = logging.getLogger("geodns.workers")

GRACE = 5.0  # beyond the check's own timeout before the supervisor gives up on a reply


class RemoteProbe:
    """The supervisor's probe function: ask the prober process, or skip."""

    def __init__(self) -> None:
        self.channel: Channel | None = None

    async def __call__(self, check: Check, address: str | None) -> ProbeResult:
        channel = self.channel
        if channel is None or channel.closed.is_set():
            raise ProbeSkipped("the prober process is restarting")
        try:
            result = await channel.request("probe", check, address,
                                           timeout=check.timeout + GRACE)
        except ChannelClosed:
            raise ProbeSkipped("the prober process went away") from None
        if not isinstance(result, ProbeResult):
            raise ProbeSkipped(f"the prober sent {type(result).__name__}")
        return result


async def serve(channel_sock: Any) -> None:
    """The prober process: run each probe asked for and send its result back."""
    session = make_session()
    done = asyncio.Event()

    async def probe(rid: int, check: Check, address: str | None) -> None:
        result = await run_check(check, address, session=session)
        channel.reply(rid, result)

    def on_message(message: tuple[Any, ...]) -> Any:
        if message[0] == "probe":
            return probe(message[1], message[2], message[3])
        if message[0] == "stop":
            done.set()
        return None

    channel = Channel(channel_sock, on_message, "supervisor")
    await channel.start()
    stopped = asyncio.get_running_loop().create_task(channel.closed.wait())
    asked = asyncio.get_running_loop().create_task(done.wait())
    await asyncio.wait([stopped, asked], return_when=asyncio.FIRST_COMPLETED)
    await session.close()
    await channel.close()
