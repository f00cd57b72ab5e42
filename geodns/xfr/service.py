"""The one object the server talks to for zone transfers (see the package docstring)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import dns.name
import dns.rrset

from geodns.config import Config
from geodns.ops.metrics import Metrics
from geodns.xfr import tsig
from geodns.xfr.journal import Journal
from geodns.xfr.notify import Notifier
from geodns.xfr.opcode import answer_opcode
from geodns.xfr.outbound import Responder
from geodns.xfr.primary import Primary
from geodns.xfr.secondary import InstallFn, Secondary
from geodns.zones.load import ZoneFileError
from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.xfr")

CheckFn = Callable[[ZoneStore], list[str]]


def conflicts(files: ZoneStore, origins: Iterable[dns.name.Name]) -> list[str]:
    """A zone both read from a file and declared ``[secondary]``: reported at the file
    (by ``geodns check``, at start-up and at reload)."""
    return [f"{files.zones[origin].file}:1: zone {origin} is read from this file and also "
            f"declared as [secondary.\"{origin}\"] in the config" for origin in origins
            if origin in files.zones]


def declared(config: Config) -> list[dns.name.Name]:
    """The secondary zones a config declares."""
    return [dns.name.from_text(zone) for zone in config.secondary]


def merge_zones(files: ZoneStore, secondary: Mapping[dns.name.Name, Zone]) -> ZoneStore:
    """One store: the file zones plus the secondary zones; ZoneFileError on a clash."""
    problems = conflicts(files, secondary)
    if problems:
        raise ZoneFileError(problems)
    return ZoneStore([*files.zones.values(), *secondary.values()])


class XfrService:
    """Primary (journal, NOTIFY out, AXFR/IXFR answers) and secondary (zones kept
    current from primaries, NOTIFY in) for one server."""

    def __init__(self, config: Config, install: InstallFn,
                 metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.config = config
        self.keys: tsig.Keyring = tsig.keyring(config.tsig)
        self.notifier = Notifier(metrics)
        self.responder = Responder(metrics)
        self.responder.expire = self.expire_remaining
        self.responder.journal = self._journal
        self.primary: Primary | None = None
        self.secondary = Secondary(Path("xfr-state", "secondary"), install, metrics)
        self.store: ZoneStore | None = None
        self._configure(config)

    # ------------------------------------------------------------ lifecycle

    def _configure(self, config: Config) -> bool:
        self.config = config
        self.keys = tsig.keyring(config.tsig)
        self.responder.transfer = config.transfer
        self.responder.keys = self.keys
        if config.transfer is not None and config.state_dir is not None:
            directory = config.state_dir / "journal"
            max_bytes = config.transfer.journal_max_bytes
            if self.primary is None or self.primary.directory != directory:
                self.primary = Primary(directory, max_bytes, self._changed)
            self.primary.max_bytes = max_bytes
        else:
            self.primary = None
        if config.state_dir is not None:  # zones added from now on keep their copies here
            self.secondary.directory = config.state_dir / "secondary"
        return self.secondary.configure(config.secondary, self.keys)

    def update_config(self, config: Config) -> bool:
        """A reloaded config (new keys, ACLs, secondary zones); True when the set of
        secondary zones served changed (the caller's next store picks that up)."""
        return self._configure(config)

    def fitted_store(self, files: ZoneStore, check: CheckFn) -> ZoneStore:
        """The file zones plus every secondary zone that fits (start-up, zones added by
        a reload): a copy that conflicts is dropped, logged, and transferred anew."""
        store = files
        for origin, zone in self.secondary.served().items():
            try:
                candidate = merge_zones(store, {origin: zone})
            except ZoneFileError as exc:
                self.secondary.drop(origin, "; ".join(exc.problems))
                continue
            problems = check(candidate)
            if problems:
                self.secondary.drop(origin, "; ".join(problems))
                continue
            store = candidate
        return store

    def merge(self, files: ZoneStore, config: Config) -> ZoneStore:
        """The store to serve for these file zones and this (reloaded) config: the
        secondary zones it still declares; raises ZoneFileError on a conflict."""
        wanted = declared(config)
        problems = conflicts(files, wanted)
        if problems:
            raise ZoneFileError(problems)
        return merge_zones(files, {o: z for o, z in self.secondary.served().items()
                                   if o in wanted})

    def loaded(self, store: ZoneStore) -> None:
        """The server now serves ``store`` (start-up, reload, secondary install)."""
        self.store = store
        self.responder.store = store
        if self.primary is not None:
            self.primary.loaded(store)

    def start(self) -> None:
        self.secondary.start()

    async def stop(self) -> None:
        await self.secondary.stop()
        if self.primary is not None:
            await self.primary.stop()
        await self.notifier.stop()

    # ------------------------------------------------------------ hooks

    def tcp_transfer(self, wire: bytes, peer: str) -> list[bytes] | None:
        """TCP listener hook: the messages answering an AXFR/IXFR query, or None when
        ``wire`` is not one (the handler answers it)."""
        return self.responder.answer(wire, peer)

    def other_opcode(self, wire: bytes, peer: str, tcp: bool) -> bytes:
        """Handler hook for opcodes other than QUERY (NOTIFY, UPDATE, ...)."""
        return answer_opcode(wire, peer, self.secondary.notify)

    def signed_query(self, wire: bytes, peer: str, tcp: bool,
                     answer: Callable[[bytes], bytes]) -> bytes | None:
        """Handler hook for queries carrying a TSIG: verified, answered, signed."""
        return tsig.answer_signed(wire, peer, tcp, self.keys, answer)

    def expire_remaining(self, origin: dns.name.Name) -> int | None:
        """EDNS EXPIRE (RFC 7314) for a zone we serve: seconds our copy stays valid
        (a secondary zone: until its expiry; a zone from a file: its SOA EXPIRE);
        None when the zone is not served here."""
        remaining = self.secondary.remaining(origin)
        if remaining is not None:
            return remaining
        store = self.store
        zone = store.zones.get(origin) if store is not None else None
        return zone.soa[0].expire if zone is not None else None

    def _journal(self, origin: dns.name.Name) -> Journal | None:
        return self.primary.journals.get(origin) if self.primary is not None else None

    def _changed(self, soa: dns.rrset.RRset) -> None:
        transfer = self.config.transfer
        if transfer is None or not transfer.notify:
            return
        self.notifier.notify(soa, transfer.notify, tsig.key_for(self.keys, transfer.key))
