"""Telling an event's node that a user retains it (or not), now or when the node is back.

The flag is the fleet database's (:mod:`camfleet.fleetstore.flags`), written first
as *pending*; the node is then told with a signed ``PUT /api/events/<id>/retain``
to its agent API, so its retention keeps (or may drop) the event's media, and the
pending mark is cleared. A node that cannot be reached keeps the mark:
:meth:`RetainRelay.run` (every coordinator API runs one) tells it once it answers
again. Telling twice is harmless: the node's flag is simply set again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from fastapi import HTTPException
from sqlalchemy import Engine

from camfleet.fleetstore.flags import mark_retain_told, pending_retains

from .proxy import NodeProxy

log = logging.getLogger("camfleet.api.fleet")

RETRY_PERIOD_S = 2.0
"""How often pending retain flags are offered to their nodes again (seconds)."""
PER_ROUND = 1000
"""Most pending flags read per round (a node that fails is skipped for the rest of the round)."""


class RetainRelay:
    """Tells nodes the retain flags users set; keeps trying those whose node was down."""

    def __init__(self, engine: Engine, proxy: NodeProxy) -> None:
        self.engine = engine
        self.proxy = proxy

    async def tell(self, node_id: str, event_id: str, retained: bool) -> str | None:
        """Set the flag on ``node_id`` and clear the pending mark; None when done, else why it is pending."""
        body = json.dumps({"retained": retained}).encode()
        try:
            resp = await self.proxy.call(node_id, "PUT", f"/api/events/{quote(event_id, safe='')}/retain",
                                         body)
        except HTTPException as exc:
            return str(exc.detail)
        # 404: the node no longer has the event (its media are gone): nothing left to keep there
        if resp.status_code not in (200, 404):
            return f"node {node_id} answered {resp.status_code}"
        await asyncio.to_thread(mark_retain_told, self.engine, event_id, retained)
        return None

    async def retry_pending(self) -> int:
        """Offer each pending flag to its node once (a failing node is skipped this round); how many took."""
        rows = await asyncio.to_thread(pending_retains, self.engine, PER_ROUND)
        failed: set[str] = set()
        done = 0
        for event_id, node_id, retained in rows:
            if node_id in failed:
                continue
            why = await self.tell(node_id, event_id, retained)
            if why is None:
                done += 1
            else:
                failed.add(node_id)
        if done:
            log.info("retain flags delivered to their nodes: %d", done)
        return done

    async def run(self, period_s: float = RETRY_PERIOD_S) -> None:
        """Retry pending flags every ``period_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(period_s)  # the retry period, not a synchronisation
            try:
                await self.retry_pending()
            except Exception:  # the database or NATS failing now: try again next period
                log.warning("retrying pending retain flags failed", exc_info=True)
