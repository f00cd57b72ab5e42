"""``_explain.<name> TXT``: why this client gets what it gets, as a DNS answer.

Only clients the config allows get it (the handler checks); it is never cached,
because who asks decides the answer.
"""

from __future__ import annotations

import struct

from dns.rdatatype import RdataType as T

from geodns.health.snapshot import HealthSnapshot
from geodns.runtime import Runtime
from geodns.wire.decode import Query
from geodns.wire.encode import AA, QR, Rendered
from geodns.zones.names import to_text
from geodns.zones.store import Lookup, ZoneStore

__all__ = ["explain_answer"]


def explain_answer(store: ZoneStore, rt: Runtime, q: Query, client: str,
                   health: HealthSnapshot) -> Rendered:
    target = q.qname[q.qname[0] + 1:]
    found = store.find(target, T.A)
    if not isinstance(found, Lookup) or found.dynamic is None:
        lines = [f"{to_text(target)} is not a steered (DYNA) name here: static answer, "
                 "ECS scope 0"]
    elif q.ecs is not None:
        lines = rt.selector.explain(found.dynamic.pool, T.A, q.ecs_addr, q.ecs_source,
                                    health).lines()
    else:
        lines = rt.selector.explain(found.dynamic.pool, T.A, client, None, health).lines()
    records = []
    for i, line in enumerate(lines, 1):
        raw = f"{i:02d} {line}".encode()[:255]
        rdata = bytes((len(raw),)) + raw
        records.append(b"\xc0\x0c" + struct.pack("!HHIH", T.TXT, 1, 0, len(rdata)) + rdata)
    return Rendered(QR | AA, len(records), 0, 0, b"".join(records))
