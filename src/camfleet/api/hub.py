"""WebSocket fan-out: every message to every client through a bounded queue per client.

A client whose queue is full is dropped (closed with code 1013, "try again
later"); publishing never waits on a client. Messages from other threads (the
node's listeners) enter through :meth:`Hub.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

log = logging.getLogger("camfleet.api")


class Client:
    """One connected WebSocket: its queue of encoded messages, its sender, whether it was dropped."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.dropped = False
        self.sending_since: float | None = None  # loop time a send began, while it is in progress
        self.task: asyncio.Task[None] | None = None


class Hub:
    """The set of connected clients, and the messages sent to all of them."""

    def __init__(self, queue_size: int = 256, send_timeout: float = 5.0) -> None:
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.clients: set[Client] = set()
        self.dropped = 0
        self.sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (the server's) for messages published from other threads."""
        self._loop = loop

    def add(self) -> Client:
        """Register a new client."""
        client = Client(self.queue_size)
        self.clients.add(client)
        return client

    def remove(self, client: Client) -> None:
        """Forget ``client``."""
        self.clients.discard(client)

    def publish(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every client (call on the loop's thread)."""
        if not self.clients:
            return
        if "sent_at" not in message:
            message = {**message, "sent_at": time.time()}
        self.publish_text(json.dumps(message, separators=(",", ":"), default=str))

    def publish_text(self, text: str) -> None:
        """Queue an encoded message for every client (call on the loop's thread)."""
        for client in list(self.clients):
            try:
                client.queue.put_nowait(text)
                self.sent += 1
            except asyncio.QueueFull:
                self._drop(client)

    def drop(self, client: Client) -> None:
        """Drop ``client`` (its sender closes the socket with code 1013)."""
        if not client.dropped:
            self._drop(client)

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self.clients.discard(client)
        self.dropped += 1
        log.warning("dropped a slow WebSocket client (%d messages queued)", client.queue.qsize())
        # wake its sender so it closes the socket; the queue is full, so make room first
        with contextlib.suppress(asyncio.QueueEmpty):
            client.queue.get_nowait()
        client.queue.put_nowait(None)
        if client.sending_since is not None and client.task is not None:
            client.task.cancel()  # stuck in a send: the socket does not drain

    def check_stuck(self, now: float) -> None:
        """Drop the clients whose current send has not finished in ``send_timeout`` seconds (loop time)."""
        for client in list(self.clients):
            since = client.sending_since
            if since is not None and now - since > self.send_timeout:
                self._drop(client)

    def publish_threadsafe(self, message: dict[str, Any]) -> None:
        """Queue ``message`` from any thread (dropped when the server is not running)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self.publish, message)

    def close_all(self) -> None:
        """Ask every client's sender to close (on the loop's thread)."""
        for client in list(self.clients):
            with contextlib.suppress(asyncio.QueueEmpty):
                while client.queue.full():
                    client.queue.get_nowait()
            client.queue.put_nowait(None)
        self.clients.clear()
