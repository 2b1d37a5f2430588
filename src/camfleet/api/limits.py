"""Limits: request bodies over a size (413, an ASGI middleware), slots per token, locks per key."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(HTTPException):
    """Raised while reading a body past the limit (an HTTPException so FastAPI passes it on as 413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodyLimit:
    """Rejects bodies larger than ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class TooMany(Exception):
    """A key already holds as many slots as its limit allows."""


class PerKeyLimit:
    """At most ``limit`` concurrent holders per key (a token's name); empty keys are forgotten.

    Thread-safe: used from the request threads (exports) and the event loop (WebSockets).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> None:
        """Take a slot for ``key``.

        Raises:
            TooMany: ``key`` already holds ``limit`` slots.
        """
        with self._lock:
            n = self._held.get(key, 0)
            if n >= self.limit:
                raise TooMany(key)
            self._held[key] = n + 1

    def release(self, key: str) -> None:
        """Give back a slot of ``key``."""
        with self._lock:
            n = self._held.get(key, 0) - 1
            if n > 0:
                self._held[key] = n
            else:
                self._held.pop(key, None)

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """A slot of ``key`` while the block runs (raises :class:`TooMany` when none is free)."""
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def held(self, key: str) -> int:
        """Slots ``key`` holds now."""
        with self._lock:
            return self._held.get(key, 0)

    def __len__(self) -> int:
        """Keys holding at least one slot."""
        with self._lock:
            return len(self._held)


class KeyedLocks:
    """One lock per key (a clip's name), held only while someone uses or waits for it.

    Unlike a plain ``dict[str, Lock]``, the table never grows past the number
    of keys in use at once: an entry is removed when its last user leaves.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock while the block runs (waits for other holders)."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users > 1:
                    self._locks[key] = (lock, users - 1)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        """Keys in use or waited for now."""
        with self._guard:
            return len(self._locks)
