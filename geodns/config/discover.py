"""Which config file a command uses: ``--config FILE``, else ``./geodns.toml``, else none.

serve, check, explain and simulate all call :func:`find_config`, so they agree, and
each says which file it picked (an operator should never have to guess).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_CONFIG", "ConfigChoice", "find_config"]

DEFAULT_CONFIG: Final = "geodns.toml"


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    """The config path (None: run without one) and how it was chosen."""

    path: str | None
    how: str  # "--config", "current directory", "--no-config", "none found"

    def describe(self) -> str:
        """``config: geodns.toml (found in the current directory)`` and the like."""
        if self.how == "--config":
            return f"config: {self.path} (--config)"
        if self.how == "current directory":
            return f"config: {self.path} (found in the current directory)"
        if self.how == "--no-config":
            return "config: none (--no-config): zones only, no pools"
        return (f"config: none (no --config and no ./{DEFAULT_CONFIG}): zones only, "
                "no pools")


def find_config(flag: str | None, no_config: bool = False) -> ConfigChoice:
    """``--config`` wins; else ``./geodns.toml`` when it exists; ``--no-config`` opts out."""
    if flag is not None:
        return ConfigChoice(flag, "--config")
    if no_config:
        return ConfigChoice(None, "--no-config")
    if os.path.isfile(DEFAULT_CONFIG):
        return ConfigChoice(DEFAULT_CONFIG, "current directory")
    return ConfigChoice(None, "none found")
