"""NOTIFY out (RFC 1996): tell secondaries that a zone's serial changed.

One task per (zone, secondary); a newer change cancels the older task, so a
secondary is only ever told the latest serial.  Each NOTIFY is retried with a
growing timeout until it is answered (signed with ``[transfer] key`` when set).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import dns.tsig

from geodns.config import HostPort
from geodns.ops.metrics import Metrics

log = logging.getLogger("geodns.xfr")

ATTEMPTS = 5
FIRST_TIMEOUT = 1.0  # seconds; doubled after each unanswered attempt


def make_notify(soa: dns.rrset.RRset, key: dns.tsig.Key | None) -> dns.message.Message:
    """NOTIFY for the SOA's zone, carrying the new SOA in the answer (RFC 1996 3.7)."""
    q = dns.message.make_query(soa.name, "SOA")
    q.flags = dns.flags.AA  # RD clear
    q.set_opcode(dns.opcode.NOTIFY)
    q.answer.append(soa)
    if key is not None:
        q.use_tsig(key)
    return q


async def send_notify(soa: dns.rrset.RRset, target: HostPort, key: dns.tsig.Key | None,
                      metrics: Metrics | None = None, attempts: int = ATTEMPTS,
                      first_timeout: float = FIRST_TIMEOUT) -> bool:
    """Send until answered; True when the secondary answered NOERROR."""
    zone = soa.name
    serial = soa[0].serial
    timeout = first_timeout
    outcome = "timeout"
    try:
        for _ in range(attempts):
            q = make_notify(soa, key)
            try:
                r = await dns.asyncquery.udp(q, target.host, timeout=timeout, port=target.port)
            except dns.exception.Timeout:
                timeout *= 2
                continue
            except (dns.exception.DNSException, OSError) as exc:
                # A TSIG error from the secondary, an unsigned answer, ICMP unreachable.
                log.warning("NOTIFY %s serial %d to %s: %s", zone, serial, target,
                            str(exc) or type(exc).__name__)
                outcome = "error"
                await asyncio.sleep(timeout)
                timeout *= 2
                continue
            rcode = r.rcode()
            if rcode == dns.rcode.NOERROR:
                log.info("NOTIFY %s serial %d to %s: acknowledged", zone, serial, target)
                outcome = "ok"
                return True
            log.warning("NOTIFY %s serial %d to %s: answered %s", zone, serial, target,
                        dns.rcode.to_text(rcode))
            outcome = "rejected"
            return False
        log.warning("NOTIFY %s serial %d to %s: no answer after %d attempts", zone, serial,
                    target, attempts)
        return False
    except asyncio.CancelledError:
        outcome = "superseded"  # a newer serial is being announced
        raise
    finally:
        if metrics is not None:
            metrics.notify_sent[outcome] += 1


class Notifier:
    """The NOTIFY tasks in flight, at most one per (zone, secondary)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.tasks: dict[tuple[dns.name.Name, HostPort], asyncio.Task[bool]] = {}

    def notify(self, soa: dns.rrset.RRset, targets: Iterable[HostPort],
               key: dns.tsig.Key | None) -> None:
        for target in targets:
            slot = (soa.name, target)
            old = self.tasks.get(slot)
            if old is not None and not old.done():
                old.cancel()
            task = asyncio.get_running_loop().create_task(
                send_notify(soa, target, key, self.metrics))
            self.tasks[slot] = task
            task.add_done_callback(functools.partial(self._done, slot))

    def _done(self, slot: tuple[dns.name.Name, HostPort], task: asyncio.Task[bool]) -> None:
        if self.tasks.get(slot) is task:
            del self.tasks[slot]

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
