"""Config features that parse and validate but that the server does not act on yet.

Issue 12 (load feeds, spillover, latency maps, ASN rules, guards) lands in two steps:
config and data first, selector later.  Until a feature is wired, a config using it
must not pass ``geodns check`` or start a server as if it worked, so each use is
recorded as a ``FILE:LINE: key.path: problem`` that :func:`geodns.config.parse_config`
raises unless called with ``allow_unwired=True`` (tests, and the lead while wiring).

Wiring a feature = deleting its entry from :data:`UNWIRED`.
"""

from __future__ import annotations

from typing import Final

# feature -> what the operator is told it would have done
UNWIRED: Final[dict[str, str]] = {}


def unwired_message(feature: str) -> str | None:
    """The problem text for using ``feature``, or None once it is wired."""
    what = UNWIRED.get(feature)
    if what is None:
        return None
    return f"{what} (issue 12); remove it, or run a geodns that supports it"
