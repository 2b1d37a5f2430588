"""Where an agent's cameras come from: the seam the fleet's desired state will plug into.

STUB (next step of issue 14): the coordinators' leader will write each node's
configuration to its own KV key, with the revision as a fencing token; a
``KvDesiredState`` will watch that key, check the configuration ("self
check"), apply it through :meth:`NodeControl.apply_config` and report the
revision applied or the errors that made it refuse. Until then an agent runs
the configuration it was started with (:class:`StaticDesiredState`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from camfleet.runtime.control import NodeControl

__all__ = ["DesiredStateSource", "StaticDesiredState"]


class DesiredStateSource(Protocol):
    """Drives a node's configuration from somewhere else until ``stop`` is set."""

    async def run(self, node: NodeControl, stop: asyncio.Event) -> None:
        """Apply each new desired configuration to ``node`` (through ``apply_config``) until ``stop``."""
        ...


class StaticDesiredState:
    """The configuration the agent was started with, never changed (the stub before the fleet's own)."""

    async def run(self, node: NodeControl, stop: asyncio.Event) -> None:
        """Nothing to apply: wait for ``stop``."""
        await stop.wait()
