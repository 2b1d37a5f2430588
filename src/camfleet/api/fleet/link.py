"""``FleetLink``: the coordinator API's NATS connection: control requests, node statuses, live events.

It lives in the API server's event loop. Control requests (``camfleet.ctl.<verb>``)
are answered by the leader wherever it runs, so a write made on any coordinator
goes through the leader. Agents' status snapshots (``camfleet.status.<node>``)
and outbox messages (``camfleet.events.<node>``) are plain subjects every
coordinator can read, so status and live events need no leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from camfleet.cluster.connection import NatsOptions, connect
from camfleet.cluster.control import ask
from camfleet.cluster.registry import EVENTS_SUBJECT_PREFIX, STATUS_PREFIX
from camfleet.vocabulary import EventMessage, decode

from ..schemas import Event

log = logging.getLogger("camfleet.api.fleet")

CONTROL_TIMEOUT_S = 10.0
"""How long a control request waits for the leader (seconds)."""
FIRST_CONNECT_S = 3.0
"""How long the API's start waits for NATS before serving without it (seconds; retried after)."""


class FleetLink:
    """One NATS connection: :meth:`request` to the leader, the latest status of each node, events.

    ``on_message`` receives the node API's WebSocket messages for events
    (``{"type": "event", "event_type", "event"}``), in the link's loop.
    """

    def __init__(self, options: NatsOptions, name: str = "camfleet-coordinator-api") -> None:
        self.options = NatsOptions(options.urls, options.creds, options.ca_file, name=name)
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self._client: Client | None = None
        self._retry: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._statuses: dict[str, tuple[dict[str, Any], float]] = {}

    @property
    def connected(self) -> bool:
        """Whether the NATS connection is up now."""
        return self._client is not None and self._client.is_connected

    async def start(self) -> None:
        """Connect and subscribe; while no server answers, keep trying in the background.

        The API serves meanwhile: ready says ``nats: false`` and leader requests answer 503.
        Once connected, the client reconnects by itself (:func:`~camfleet.cluster.connection.connect`).
        """
        try:
            await self._connect(FIRST_CONNECT_S)
        except ConnectionError as exc:
            log.warning("coordinator API: %s; trying again in the background", exc)
            self._retry = asyncio.create_task(self._connect_until_up(), name="fleet-api-connect")

    async def _connect(self, timeout_s: float) -> None:
        client = await connect(self.options, timeout_s=timeout_s)
        await client.subscribe(f"{STATUS_PREFIX}.*", cb=self._on_status)
        await client.subscribe(f"{EVENTS_SUBJECT_PREFIX}.*", cb=self._on_event)
        self._client = client

    async def _connect_until_up(self) -> None:
        while True:
            try:
                await self._connect(5.0)
                log.info("coordinator API: connected to NATS")
                return
            except ConnectionError:
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Close the connection (bounded)."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)

    def jetstream(self) -> JetStreamContext:
        """A JetStream context on the link's connection (ConnectionError while not connected)."""
        if self._client is None:
            raise ConnectionError("not connected to NATS")
        return self._client.jetstream(timeout=2.0)

    async def request(self, verb: str, payload: dict[str, Any] | None = None,
                      timeout_s: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
        """The leader's reply to ``verb`` (ControlError: no leader, a timeout, its error)."""
        from camfleet.cluster.control import ControlError  # noqa: PLC0415

        if self._client is None:
            raise ControlError("not connected to NATS")
        return await ask(self._client, verb, payload, timeout_s=timeout_s)

    def statuses(self) -> dict[str, tuple[dict[str, Any], float]]:
        """Each node's (latest status snapshot, arrival in monotonic seconds); any thread."""
        with self._lock:
            return dict(self._statuses)

    async def _on_status(self, msg: Msg) -> None:
        node_id = msg.subject[len(STATUS_PREFIX) + 1:]
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        if node_id and isinstance(data, dict):
            with self._lock:
                self._statuses[node_id] = (data, time.monotonic())

    async def _on_event(self, msg: Msg) -> None:
        if self.on_message is None:
            return
        try:
            message = decode(msg.data)
        except (ValueError, KeyError, TypeError):
            return  # the events consumer records what does not decode; the live feed skips it
        if isinstance(message, EventMessage):
            event = Event(**message.event.public()).model_dump()
            event["node"] = msg.subject[len(EVENTS_SUBJECT_PREFIX) + 1:]
            self.on_message({"type": "event", "event_type": message.type, "event": event})
