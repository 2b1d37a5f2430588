"""The live overlay's metadata: each camera's meta ring, read once and fanned out to WebSocket clients.

The pipeline publishes one JSON record per analysed frame (see
:mod:`camfleet.pipeline.meta`). A camera's ring is read by one thread of the
API process while at least one client watches it; each client has a small
queue, and a client that falls behind loses its oldest records (never slows
the reader or the other clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field

from camfleet import framebus
from camfleet.pipeline.meta import meta_ring_key

log = logging.getLogger("camfleet.api")

CLIENT_QUEUE = 8
"""Records queued per client; older ones are dropped when it is full (the overlay wants the newest)."""


@dataclass(eq=False)  # compared and hashed by identity: a set of clients
class MetaClient:
    """One viewer of one camera's records (JSON text, as published)."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    dropped: int = 0

    def offer(self, text: str | None) -> None:
        """Queue ``text`` (None: the feed ended), dropping the oldest record when full (loop thread)."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait(text)


class _Feed:
    """The reader thread of one camera's ring and its clients."""

    def __init__(self, camera: str, feeds: MetaFeeds) -> None:
        self.camera = camera
        self.clients: set[MetaClient] = set()
        self._feeds = feeds
        self._thread = threading.Thread(target=self._run, name=f"camfleet-meta-{camera}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _send(self, text: str | None) -> None:
        with self._feeds.lock:
            clients = list(self.clients)
        for c in clients:
            with contextlib.suppress(RuntimeError):  # the client's loop is closed: the server stops
                c.loop.call_soon_threadsafe(c.offer, text)

    def _run(self) -> None:
        key = meta_ring_key(self.camera)
        name = f"api-meta-{os.getpid()}-{id(self) & 0xFFFF:x}"
        while not self._feeds.stopping.is_set():
            with self._feeds.lock:
                if not self.clients:
                    if self._feeds.feeds.get(self.camera) is self:
                        del self._feeds.feeds[self.camera]
                    return
            try:
                # connect_timeout waits for the pipeline (a restart, a camera being added)
                with framebus.subscribe_packets(key, name=name, connect_timeout=1.0) as sub:
                    while not self._feeds.stopping.is_set():
                        with self._feeds.lock:
                            if not self.clients:
                                break
                        try:
                            packet = sub.next(timeout=1.0)
                        except framebus.FrameTimeout:
                            continue
                        self._send(packet.data.decode("utf-8", "replace"))
            except (framebus.NotFound, framebus.PublisherGone):
                continue
            except framebus.FramebusError as exc:
                log.warning("camera %s: overlay metadata ring unreadable (%s)", self.camera, exc)
                self._feeds.stopping.wait(1.0)  # back-off before opening it again


class MetaFeeds:
    """Every camera's overlay feed of one API instance."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.feeds: dict[str, _Feed] = {}
        self.stopping = threading.Event()

    def add(self, camera: str, loop: asyncio.AbstractEventLoop) -> MetaClient:
        """A new client of ``camera``'s records (starts the camera's reader when it is the first)."""
        client = MetaClient(loop)
        with self.lock:
            feed = self.feeds.get(camera)
            new = feed is None
            if feed is None:
                feed = self.feeds[camera] = _Feed(camera, self)
            feed.clients.add(client)
        if new:
            feed.start()
        return client

    def remove(self, camera: str, client: MetaClient) -> None:
        """Forget ``client`` (its camera's reader stops within a second when it was the last)."""
        with self.lock:
            feed = self.feeds.get(camera)
            if feed is not None:
                feed.clients.discard(client)

    def close(self) -> None:
        """Stop every reader (each within a second) and end every client's stream."""
        self.stopping.set()
        with self.lock:
            clients = [c for f in self.feeds.values() for c in f.clients]
        for c in clients:
            with contextlib.suppress(RuntimeError):
                c.loop.call_soon_threadsafe(c.offer, None)
