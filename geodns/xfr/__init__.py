"""Zone transfers: geodns as a primary and as a secondary (RFC 5936, 1995, 1996,
8945, 7314), built on dnspython's transfer, TSIG and NOTIFY support.

Modules: ``service`` (the facade below), ``outbound`` (AXFR/IXFR answers),
``journal`` (differences between versions, on disk), ``primary`` (journal + NOTIFY on
every new store), ``notify`` (NOTIFY out), ``secondary`` (zones kept current from
primaries, NOTIFY in), ``opcode`` (NOTIFY/UPDATE/other opcodes), ``tsig``,
``expire`` (EDNS EXPIRE), ``zonedata`` and ``files`` (records as text, atomic files).

How the server uses it (the whole interface; every call is on the event loop):

``XfrService(config, install, metrics)``
    Built once.  ``install(zones: Mapping[Name, Zone]) -> list[str]`` is the
    server's function that serves the file zones plus exactly these secondary zones
    (:func:`merge_zones`, then the config cross-checks), swapping in one new store, or
    keeps the old store and returns the problems.
``fitted_store(files, check) -> ZoneStore``
    At start-up (and when a reload adds secondary zones): the file zones plus the
    secondary copies (from disk) that fit; the others are dropped and transferred.
``merge(files, config) -> ZoneStore``
    On reload: the new file zones plus the secondary zones the config keeps; raises
    ``ZoneFileError`` when a zone is both a file and ``[secondary]``.
``loaded(store)``
    After every store the server starts serving (start-up, reload, install): the
    primary journals changed zones and sends NOTIFY.
``update_config(config) -> bool``
    After a config reload (keys, ACLs, NOTIFY targets, secondary zones).
``tcp_transfer(wire, peer) -> list[bytes] | None``
    TCP listener hook: the messages (unframed) answering an AXFR/IXFR query, or None
    for any other query.  UDP transfers stay FORMERR in the handler.
``other_opcode(wire, peer, tcp) -> bytes``
    Handler hook for opcodes other than QUERY: NOTIFY (to the secondary), UPDATE and
    the rest (NOTIMP, with OPT when the query had one).
``expire_remaining(origin) -> int | None``
    EDNS EXPIRE seconds for a SOA answer: a secondary zone's time left before it
    expires, a file zone's SOA EXPIRE, None when the zone is not served.
``start()`` / ``await stop()``
    Refresh tasks of the secondary zones; NOTIFY and journal tasks.

A secondary zone past its SOA expire is served as a copy of its ``Zone`` with
``expired = True``; ``ZoneStore.lookup`` answers SERVFAIL for it.
"""
