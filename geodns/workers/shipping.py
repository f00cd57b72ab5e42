"""Zone stores from the supervisor to the workers, without stalling them.

The supervisor parses and checks every zone once; workers receive the result
instead of parsing the files again, so all of them serve exactly what was checked
(a file edited between two reads cannot split the node).  A zone the worker
already has (the loader keeps unchanged zones) travels as its name only; a big
zone travels as slices of its names, each unpickled on its own, so the worker's
serving thread gets the interpreter between slices.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Mapping
from typing import Any, Final

import dns.name

from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone

SLICE: Final = 10_000  # names per slice (about 10 ms to unpickle)

# ("same", origin) | ("zone", zone without nodes (pickled), [node slices (pickled)])
Part = tuple[Any, ...]


def pack(store: ZoneStore, known: Mapping[dns.name.Name, Zone]) -> list[Part]:
    """``store`` as parts; zones that are in ``known`` (the same objects) by name."""
    parts: list[Part] = []
    for origin, zone in store.zones.items():
        if known.get(origin) is zone:
            parts.append(("same", origin))
            continue
        shell = copy.copy(zone)
        shell.nodes = {}
        items = list(zone.nodes.items())
        slices = [pickle.dumps(dict(items[i:i + SLICE]), pickle.HIGHEST_PROTOCOL)
                  for i in range(0, len(items), SLICE)]
        parts.append(("zone", pickle.dumps(shell, pickle.HIGHEST_PROTOCOL), slices))
    return parts


async def unpack(parts: list[Part], have: Mapping[dns.name.Name, Zone]) -> ZoneStore:
    """The store again; ``have``: the zones the worker serves now (for ``same``)."""
    zones = []
    for part in parts:
        if part[0] == "same":
            zone = have.get(part[1])
            if zone is None:
                raise ValueError(f"zone {part[1]} was to be kept but is not served here")
            zones.append(zone)
            continue
        zone = pickle.loads(part[1])
        nodes: dict[Any, Any] = {}
        for blob in part[2]:
            nodes.update(pickle.loads(blob))
            await asyncio.sleep(0)  # let queries in between slices
        zone.nodes = nodes
        zones.append(zone)
    return ZoneStore(zones)
