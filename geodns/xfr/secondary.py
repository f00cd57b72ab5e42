"""The secondary side: zones declared in ``[secondary."zone."]`` kept current from
their primaries (RFC 1034 4.3.5, RFC 1995, RFC 1996, RFC 7314).

Per zone one task: a SOA query to the primaries in order; when a primary has a newer
serial, IXFR and, if that fails, AXFR.  The transfer is applied by dnspython's
``dns.xfr.Inbound`` to a scratch copy of the zone; the result is written out as a
master file and read back by the zone-file loader (``build_store``), so a transfer is
validated exactly like a zone file.  Only a complete, valid zone is handed to the
server's install function, which swaps in a whole new store or keeps the old one.

Timers come from the zone's SOA: refresh after a success, retry after a failure, and
when no primary could be reached for ``expire`` seconds the zone answers SERVFAIL
until a refresh succeeds.  A NOTIFY from a primary starts a refresh at once.  The copy
on disk (``NAME.zone`` and ``NAME.json`` with the timers) lets a restart serve at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import json
import logging
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.tsig
import dns.xfr
from dns.rdatatype import RdataType as T

from geodns.config import HostPort, SecondaryZone
from geodns.ops.metrics import Metrics
from geodns.xfr import expire, tsig
from geodns.xfr.files import file_stem, write_atomic
from geodns.xfr.logs import Quiet
from geodns.xfr.replies import PAYLOAD, rcode_only, reply
from geodns.xfr.zonedata import ConflictError, TransferZone, master_text, newer, soa_values
from geodns.zones.load import ZoneFileError
from geodns.zones.store import build_store
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.xfr")

InstallFn = Callable[[Mapping[dns.name.Name, Zone]], list[str]]
SOA_TIMEOUT = 2.0  # seconds per SOA query
CONNECT_TIMEOUT = 5.0
MESSAGE_TIMEOUT = 10.0  # between two messages of a transfer
TRANSFER_LIFETIME = 600.0
MIN_INTERVAL = 1.0  # never poll faster than this, whatever the SOA says
FIRST_RETRY = 2.0  # no copy at all yet: retry soon, doubling up to the SOA-less cap
MAX_FIRST_RETRY = 60.0


class RefreshError(Exception):
    """One primary could not refresh the zone (the message goes to the log)."""


def expired_copy(zone: Zone) -> Zone:
    """The same zone, flagged so lookups answer SERVFAIL (its SOA expire has passed)."""
    dead = copy.copy(zone)
    dead.expired = True
    return dead


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _why(exc: BaseException) -> str:
    """A log-worthy reason, naming TSIG trouble plainly."""
    if isinstance(exc, dns.tsig.PeerBadSignature):
        return "TSIG error from the primary: BADSIG (the secrets differ)"
    if isinstance(exc, dns.tsig.PeerBadKey):
        return "TSIG error from the primary: BADKEY (it does not know our key)"
    if isinstance(exc, dns.tsig.PeerBadTime):
        return "TSIG error from the primary: BADTIME (clocks differ)"
    if isinstance(exc, dns.tsig.BadSignature | dns.tsig.BadKey | dns.message.UnknownTSIGKey):
        return f"TSIG: the primary's answer does not verify ({type(exc).__name__})"
    if isinstance(exc, TimeoutError | dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed in the middle of the transfer"
    if isinstance(exc, dns.xfr.TransferError):
        return f"answered {dns.rcode.to_text(dns.rcode.Rcode(exc.rcode))}"
    return str(exc) or type(exc).__name__


class ZoneState:
    """One secondary zone: its config, the copy we serve and its timers."""

    def __init__(self, conf: SecondaryZone, directory: Path) -> None:
        self.conf = conf
        self.origin = dns.name.from_text(conf.zone)
        stem = file_stem(self.origin)
        self.path = directory / f"{stem}.zone"
        self.meta_path = directory / f"{stem}.json"
        self.zone: Zone | None = None
        self.refreshed: float | None = None  # wall clock of the last good refresh
        self.expires_at: float | None = None  # wall clock
        self.expired = False
        self.failures = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None  # fires at expires_at
        self.saving: asyncio.Task[None] | None = None  # the last disk write scheduled

    def served(self) -> Zone | None:
        if self.zone is None:
            return None
        return expired_copy(self.zone) if self.expired else self.zone

    def remaining(self, now: float) -> int | None:
        if self.expires_at is None:
            return None
        return max(0, int(self.expires_at - now))

    def from_primary(self, peer: str) -> bool:
        ip = _ip(peer)
        return ip is not None and any(_ip(p.host) == ip for p in self.conf.primaries)


class Secondary:
    """Every secondary zone; installs complete zones through ``install``."""

    def __init__(self, directory: Path, install: InstallFn, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.install = install
        self.metrics = metrics
        self.clock = clock
        self.keys: tsig.Keyring = {}
        self.zones: dict[dns.name.Name, ZoneState] = {}
        self.running = False
        self.copies = True  # read the kept copies (False: a worker only checks NOTIFYs)
        self.quiet = Quiet(log)  # refusals a spoofed NOTIFY can cause

    # ------------------------------------------------------------------ config

    def configure(self, zones: Mapping[str, SecondaryZone], keys: tsig.Keyring) -> bool:
        """Take a (re)loaded config; True when the set of zones served changed."""
        self.keys = keys
        wanted = {dns.name.from_text(z): conf for z, conf in zones.items()}
        changed = False
        for origin in set(self.zones) - set(wanted):
            st = self.zones.pop(origin)
            if st.task is not None:
                st.task.cancel()
            if st.timer is not None:
                st.timer.cancel()
            self._metric_drop(st)
            log.info("secondary zone %s: no longer in the config; not served", origin)
            changed = True
        for origin, conf in wanted.items():
            known = self.zones.get(origin)
            if known is not None:
                if known.conf != conf:
                    known.conf = conf
                    known.wake.set()  # new primaries or key: refresh now
                continue
            st = self.zones[origin] = ZoneState(conf, self.directory)
            if self.copies and self._load_copy(st):
                changed = True
            if self.running:
                self._start(st)
        return changed

    def served(self) -> dict[dns.name.Name, Zone]:
        """The secondary zones to serve now (expired copies flagged for SERVFAIL)."""
        out = {}
        for origin, st in self.zones.items():
            zone = st.served()
            if zone is not None:
                out[origin] = zone
        return out

    def drop(self, origin: dns.name.Name, reason: str) -> None:
        """Forget a copy the server cannot serve (e.g. a conflict found at start-up)."""
        st = self.zones.get(origin)
        if st is not None and st.zone is not None:
            log.error("secondary zone %s: copy %s not served: %s", origin, st.path, reason)
            st.zone = None

    # ------------------------------------------------------------------ disk

    def _load_copy(self, st: ZoneState) -> bool:
        """Serve the copy on disk at once (expired if its timers say so)."""
        try:
            text = st.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except (OSError, UnicodeDecodeError) as exc:
            log.error("secondary zone %s: cannot read %s: %s", st.origin, st.path, exc)
            return False
        try:
            zone = _validate(st, text)
        except ZoneFileError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            log.error("secondary zone %s: the copy on disk is not valid; transferring anew",
                      st.origin)
            return False
        refreshed, expires_at = self._read_meta(st, zone)
        st.zone, st.refreshed, st.expires_at = zone, refreshed, expires_at
        st.expired = expires_at <= self.clock()
        log.info("secondary zone %s: serial %d from %s%s", st.origin, zone.serial, st.path,
                 " (expired: SERVFAIL until a refresh succeeds)" if st.expired else "")
        self._metric(st)
        return True

    def _read_meta(self, st: ZoneState, zone: Zone) -> tuple[float, float]:
        try:
            meta = json.loads(st.meta_path.read_text(encoding="utf-8"))
            if int(meta["serial"]) == zone.serial:
                return float(meta["refreshed"]), float(meta["expires"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        refreshed = st.path.stat().st_mtime  # no timers: count from the copy's age
        return refreshed, refreshed + soa_values(zone)[3]

    def _save(self, st: ZoneState, text: str | None) -> None:
        """Write the copy (when ``text``) and its timers in a thread, one write at a
        time per zone and in order, so the serving loop never waits for the disk."""
        assert st.zone is not None
        meta = json.dumps({"serial": st.zone.serial, "refreshed": st.refreshed,
                           "expires": st.expires_at}) + "\n"
        previous = st.saving

        async def save() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await asyncio.get_running_loop().run_in_executor(None, _write, st, text, meta)

        st.saving = asyncio.get_running_loop().create_task(save())

    # ------------------------------------------------------------------ tasks

    def start(self) -> None:
        self.running = True
        for st in self.zones.values():
            self._start(st)

    def _start(self, st: ZoneState) -> None:
        st.task = asyncio.get_running_loop().create_task(self._run(st))
        self._arm(st)

    def _arm(self, st: ZoneState) -> None:
        """Expire on time, whatever a refresh in progress is waiting for."""
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        if self.running and st.zone is not None and not st.expired \
                and st.expires_at is not None:
            delay = max(0.0, st.expires_at - self.clock())
            st.timer = asyncio.get_running_loop().call_later(delay, self._check_expiry, st)

    async def stop(self) -> None:
        self.running = False
        tasks = [st.task for st in self.zones.values() if st.task is not None]
        for st in self.zones.values():
            self._arm(st)  # not running: cancels the expiry timer
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.saved()  # let the files be complete

    async def saved(self) -> None:
        """Until every disk write scheduled so far is done."""
        saving = [st.saving for st in self.zones.values() if st.saving is not None]
        await asyncio.gather(*saving, return_exceptions=True)

    async def _run(self, st: ZoneState) -> None:
        first_retry = FIRST_RETRY
        while True:
            try:
                ok = await self.refresh(st)
            except Exception:  # a bug must not end the zone's refreshes
                log.exception("secondary zone %s: refresh failed", st.origin)
                ok = False
            if st.zone is None:
                delay, first_retry = first_retry, min(first_retry * 2, MAX_FIRST_RETRY)
            else:
                _, refresh, retry, _ = soa_values(st.zone)
                delay = max(MIN_INTERVAL, refresh if ok else retry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.wake.wait(), delay)
            st.wake.clear()

    def _check_expiry(self, st: ZoneState) -> None:
        if st.zone is None or st.expired or st.expires_at is None:
            return
        if self.clock() < st.expires_at:
            self._arm(st)  # woken early (clock adjustments): wait for the rest
            return
        st.expired = True
        log.error("secondary zone %s: no primary reached for the SOA expire time; answering "
                  "SERVFAIL until a refresh succeeds", st.origin)
        problems = self.install(self.served())
        if problems:  # cannot happen for a zone that was served a moment ago; be loud
            for problem in problems:
                log.error("%s", problem)
        self._metric(st)

    # ------------------------------------------------------------------ refresh

    async def refresh(self, st: ZoneState) -> bool:
        """Try each primary in order; True when the zone is current (or was updated)."""
        errors = []
        for primary in st.conf.primaries:
            try:
                await self._refresh_from(st, primary)
                return True
            except ZoneFileError as exc:
                for problem in exc.problems:
                    log.error("%s", problem)
                errors.append(f"{primary}: the transferred zone is not valid "
                              f"({len(exc.problems)} problems above); kept serial "
                              f"{st.zone.serial if st.zone is not None else 'none'}")
            except (RefreshError, ConflictError) as exc:
                errors.append(f"{primary}: {exc}")
            except (dns.exception.DNSException, OSError, TimeoutError, EOFError,
                    asyncio.IncompleteReadError) as exc:
                errors.append(f"{primary}: {_why(exc)}")
        st.failures += 1
        log.warning("secondary zone %s: refresh failed (%d in a row): %s", st.origin,
                    st.failures, "; ".join(errors))
        if self.metrics is not None:
            self.metrics.secondary_failures[st.conf.zone] += 1
        return False

    async def _refresh_from(self, st: ZoneState, primary: HostPort) -> None:
        serial, expire_secs = await self._soa(st, primary)
        if st.zone is not None and not newer(serial, st.zone.serial):
            if serial != st.zone.serial:
                log.warning("secondary zone %s: %s has serial %d, older than our %d; "
                            "keeping ours", st.origin, primary, serial, st.zone.serial)
            self._fresh(st, expire_secs, None)
            return
        if st.zone is not None:
            try:
                await self._transfer(st, primary, T.IXFR)
                return
            except (RefreshError, ZoneFileError):
                raise  # the data itself is bad: an AXFR of the same data is no better
            except (dns.exception.DNSException, OSError, TimeoutError, EOFError,
                    ConflictError) as exc:
                log.warning("secondary zone %s: IXFR from %s failed (%s); trying AXFR",
                            st.origin, primary, _why(exc))
        await self._transfer(st, primary, T.AXFR)

    def _query_key(self, st: ZoneState) -> dns.tsig.Key | None:
        return tsig.key_for(self.keys, st.conf.key)

    async def _soa(self, st: ZoneState, primary: HostPort) -> tuple[int, int | None]:
        q = dns.message.make_query(st.origin, T.SOA, use_edns=0,
                                   options=[expire.request_option()])
        q.flags = 0
        key = self._query_key(st)
        if key is not None:
            q.use_tsig(key)
        r = await dns.asyncquery.udp(q, primary.host, timeout=SOA_TIMEOUT, port=primary.port)
        if r.flags & dns.flags.TC:
            r = await dns.asyncquery.tcp(q, primary.host, timeout=SOA_TIMEOUT,
                                         port=primary.port)
        if r.rcode() != dns.rcode.NOERROR:
            raise RefreshError(f"SOA query answered {dns.rcode.to_text(r.rcode())}")
        soa = r.get_rrset(r.answer, st.origin, dns.rdataclass.IN, T.SOA)
        if soa is None or not r.flags & dns.flags.AA:
            raise RefreshError("no authoritative SOA in the answer")
        return soa[0].serial, expire.value(r)

    async def _transfer(self, st: ZoneState, primary: HostPort, rdtype: T) -> None:
        target = TransferZone.of(st.zone if rdtype == T.IXFR else None, st.origin)
        key = self._query_key(st)
        query, serial = dns.xfr.make_query(
            target, serial=0 if rdtype == T.IXFR else None, use_edns=0,
            options=[expire.request_option()], keyring=key)
        kind = "IXFR" if query.question[0].rdtype == T.IXFR else "AXFR"
        t0 = time.monotonic()
        async with asyncio.timeout(TRANSFER_LIFETIME):
            expire_secs, messages = await _inbound(primary, target, query, serial)
        new = target.serial()
        assert new is not None
        if st.zone is not None and new == st.zone.serial:
            self._fresh(st, expire_secs, None)
            return
        text = master_text(st.origin, target.lines())
        try:
            zone = await asyncio.get_running_loop().run_in_executor(None, _validate, st, text)
        except ZoneFileError as exc:
            raise _rejected(st, text, exc) from None
        self._accept(st, zone, text, expire_secs, f"{kind} from {primary}, {messages} messages, "
                     f"{time.monotonic() - t0:.3f} s")

    def _accept(self, st: ZoneState, zone: Zone, text: str, expire_secs: int | None,
                how: str) -> None:
        """Serve a validated zone, or keep the old one if the server rejects it."""
        candidate = self.served()
        candidate[st.origin] = zone
        problems = self.install(candidate)
        if problems:
            raise RefreshError("not installed: " + "; ".join(problems))
        old = st.zone.serial if st.zone is not None else None
        st.zone = zone
        self._fresh(st, expire_secs, text)
        log.info("secondary zone %s: serial %s -> %d (%s)", st.origin, old, zone.serial, how)

    def _fresh(self, st: ZoneState, expire_secs: int | None, text: str | None) -> None:
        """A refresh succeeded: restart the timers (RFC 7314: EXPIRE never shortens
        them) and serve the zone again if it had expired."""
        assert st.zone is not None
        now = self.clock()
        secs = expire_secs if expire_secs is not None else soa_values(st.zone)[3]
        st.refreshed = now
        st.expires_at = max(st.expires_at or 0.0, now + secs) if expire_secs is not None \
            else now + secs
        st.failures = 0
        if st.expired:
            st.expired = False
            problems = self.install(self.served())
            if problems:
                st.expired = True
                raise RefreshError("not installed: " + "; ".join(problems))
            log.info("secondary zone %s: refreshed, serving again", st.origin)
        self._arm(st)
        self._save(st, text)
        self._metric(st)

    # ------------------------------------------------------------------ NOTIFY

    def notify(self, wire: bytes, peer: str) -> bytes:
        """Answer a NOTIFY (RFC 1996): NOERROR and a refresh from an allowed primary,
        REFUSED from anyone else, NOTAUTH for a bad signature."""
        try:
            checked = tsig.check(wire, self.keys)
        except dns.exception.DNSException:
            return rcode_only(wire, dns.rcode.FORMERR)
        msg = checked.msg
        if len(msg.question) != 1 or msg.question[0].rdtype != T.SOA:
            return reply(msg, dns.rcode.FORMERR)
        origin = msg.question[0].name

        def refuse(kind: str, why: str, *args: object) -> bytes:
            self.quiet.warning(kind, "NOTIFY for %s from %s refused: " + why, origin, peer,
                               *args)
            return reply(msg, dns.rcode.REFUSED)

        st = self.zones.get(origin)
        if st is None:
            return refuse("notify-zone", "not a secondary zone here")
        if not st.from_primary(peer):
            return refuse("notify-peer", "not one of its primaries (%s)",
                          ", ".join(str(p) for p in st.conf.primaries))
        if checked.error:
            self.quiet.warning("notify-tsig", "NOTIFY for %s from %s refused: TSIG %s (%s) for "
                               "key %s", origin, peer, checked.error_text(), checked.detail,
                               checked.key_text())
            return tsig.error_wire(checked, self.keys, PAYLOAD)
        want = self._query_key(st)
        if want is not None and (checked.key is None or checked.key.name != want.name):
            return refuse("notify-key", "%s, key %s required", "not signed" if not checked.signed
                          else f"key {checked.key_text()}", st.conf.key)
        log.info("NOTIFY for %s from %s%s: refreshing", origin, peer, _notified_serial(msg))
        st.wake.set()
        return reply(msg, dns.rcode.NOERROR, aa=True)

    # ------------------------------------------------------------------ metrics

    def _metric(self, st: ZoneState) -> None:
        m = self.metrics
        if m is None:
            return
        name = st.conf.zone
        if st.zone is not None:
            m.secondary_serial[name] = st.zone.serial
        if st.refreshed is not None:
            m.secondary_refreshed[name] = st.refreshed
        m.secondary_expired[name] = st.expired
        m.secondary_failures[name] += 0  # present (at 0) from the first copy on

    def _metric_drop(self, st: ZoneState) -> None:
        m = self.metrics
        if m is None:
            return
        for table in (m.secondary_serial, m.secondary_refreshed, m.secondary_expired,
                      m.secondary_failures):
            table.pop(st.conf.zone, None)

    def remaining(self, origin: dns.name.Name) -> int | None:
        st = self.zones.get(origin)
        if st is None or st.zone is None:
            return None
        return st.remaining(self.clock())


def _validate(st: ZoneState, text: str) -> Zone:
    """The zone-file rules, applied to a transferred zone (problems name ``NAME.zone``)."""
    store = build_store({str(st.path): text})
    zone = store.zones.get(st.origin)
    if zone is None:
        raise ZoneFileError([f"{st.path}:1: holds {', '.join(map(str, store.zones))}, "
                             f"not {st.origin}"])
    return zone


def _write(st: ZoneState, text: str | None, meta: str) -> None:
    try:
        if text is not None:
            write_atomic(st.path, text)
        write_atomic(st.meta_path, meta)
    except OSError as exc:
        log.error("secondary zone %s: cannot write %s: %s (still serving it)", st.origin,
                  st.path, exc)


def _rejected(st: ZoneState, text: str, exc: ZoneFileError) -> ZoneFileError:
    """Keep a rejected transfer beside the copy (``NAME.zone.rejected``) so the
    operator can read the lines the problems point at."""
    rejected = st.path.with_name(st.path.name + ".rejected")
    try:
        write_atomic(rejected, text)
    except OSError:
        return exc
    old = f"{st.path}:"
    return ZoneFileError([f"{rejected}:{p[len(old):]}" if p.startswith(old) else p
                          for p in exc.problems])


async def _inbound(primary: HostPort, target: TransferZone, query: dns.message.Message,
                   serial: int | None) -> tuple[int | None, int]:
    """Run one transfer over TCP into ``target`` with dnspython's ``Inbound``;
    returns (EXPIRE seconds from the first message or None, messages read)."""
    rdtype = query.question[0].rdtype
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(primary.host, primary.port), CONNECT_TIMEOUT)
    try:
        wire = query.to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        ctx = None
        expire_secs = None
        count = 0
        with dns.xfr.Inbound(target, rdtype, serial) as inbound:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), MESSAGE_TIMEOUT)
                data = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", head)[0]), MESSAGE_TIMEOUT)
                r = dns.message.from_wire(
                    data, keyring=query.keyring, request_mac=query.mac, xfr=True,
                    tsig_ctx=ctx, multi=True, one_rr_per_rrset=rdtype == T.IXFR)
                if not query.is_response(r, xfr_continuation=count > 0):
                    raise RefreshError("an answer that does not match our query")
                if count == 0:
                    expire_secs = expire.value(r)
                count += 1
                ctx = r.tsig_ctx
                if inbound.process_message(r):
                    return expire_secs, count
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _notified_serial(msg: dns.message.Message) -> str:
    for rrset in msg.answer:
        if rrset.rdtype == T.SOA and len(rrset):
            return f" (serial {rrset[0].serial})"
    return ""

