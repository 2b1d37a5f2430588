"""The fleet's key-value store: JetStream KV buckets behind a small interface.

Everything the fleet keeps (registrations, heartbeats, the leader's lease)
goes through :class:`Bucket`, so NATS is isolated here and in
:mod:`camfleet.cluster.connection`. The operations are the ones the fleet
needs from any replicated store: read a key with its revision, write with an
optional time to live, create only when absent, compare-and-set on the
revision, and watch keys. Revisions are JetStream stream sequences: they only
grow, across keys and across writers, which is what makes them fencing tokens.

Per-message TTLs and the markers an expiry leaves (``Nats-Marker-Reason``)
need nats-server 2.11 or newer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

__all__ = ["Bucket", "Entry", "KvError", "open_bucket"]

log = logging.getLogger("camfleet.cluster.kv")

_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_TTL = "Nats-TTL"
_OP = "KV-Operation"
_MARKER = "Nats-Marker-Reason"
_WRONG_LAST = (10071, 10164)  # JSStreamWrongLastSequence: the compare in compare-and-set failed


class KvError(RuntimeError):
    """A store operation failed (no server answered, or it refused); the message names the bucket and key."""


@dataclass(frozen=True)
class Entry:
    """One key's value at ``revision``; ``deleted`` when the key was deleted or expired (value empty)."""

    key: str
    value: bytes
    revision: int
    deleted: bool = False


def _ttl_header(ttl_s: float) -> str:
    # whole milliseconds: the server parses Go durations; it refuses a TTL under one second
    return f"{max(1000, round(ttl_s * 1000))}ms"


async def open_bucket(js: JetStreamContext, name: str, *, replicas: int = 1, history: int = 1,
                      markers_ttl_s: float | None = 1.0) -> Bucket:
    """Open bucket ``name``, creating it with ``replicas`` copies when it does not exist.

    ``markers_ttl_s``: keep the marker an expired key leaves for this long (seconds), so watchers
    see expiries; None: no markers. A bucket that exists keeps its settings.
    """
    try:
        kv = await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(bucket=name, history=history, replicas=replicas, storage=StorageType.FILE,
                                limit_marker_ttl=markers_ttl_s)
        try:
            kv = await js.create_key_value(config)
        except nats.js.errors.BadRequestError:  # created by another process meanwhile
            kv = await js.key_value(name)
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"bucket {name}: cannot create it ({replicas} replicas): {exc!r}") from None
    except (TimeoutError, nats.errors.Error) as exc:
        raise KvError(f"bucket {name}: cannot open it: {exc!r}") from None
    return Bucket(js, name, kv)


class Bucket:
    """One KV bucket: get, put (with TTL), create, compare-and-set update, delete, watch."""

    def __init__(self, js: JetStreamContext, name: str, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv
        self.name = name
        self._stream = f"KV_{name}"
        self._prefix = f"$KV.{name}."

    def _subject(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> Entry | None:
        """The key's latest value, or None when it does not exist, was deleted or expired."""
        try:
            entry = await self._kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"{self.name}/{key}: get failed: {exc!r}") from None
        if not entry.value and entry.operation is None and entry.revision is not None:
            # a server-placed expiry marker reads like an empty value: look at its headers
            latest = await self._latest(key)
            if latest is None or latest.deleted:
                return None
        return Entry(key, entry.value or b"", int(entry.revision or 0))

    async def _latest(self, key: str) -> Entry | None:
        """The key's last message, tombstones and markers included (their revision matters for a create)."""
        try:
            msg = await self._js.get_last_msg(self._stream, self._subject(key))
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"{self.name}/{key}: get failed: {exc!r}") from None
        headers = msg.headers or {}
        deleted = _OP in headers or _MARKER in headers
        return Entry(key, b"" if deleted else (msg.data or b""), int(msg.seq or 0), deleted)

    async def _publish(self, key: str, value: bytes, *, last: int | None, ttl_s: float | None) -> int | None:
        headers: dict[str, str] = {}
        if last is not None:
            headers[_EXPECTED_LAST] = str(last)
        if ttl_s is not None:
            headers[_TTL] = _ttl_header(ttl_s)
        try:
            ack = await self._js.publish(self._subject(key), value, headers=headers or None)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return None
            raise KvError(f"{self.name}/{key}: write refused: {exc.description or exc!r}") from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"{self.name}/{key}: write failed: {exc!r}") from None
        return int(ack.seq)

    async def put(self, key: str, value: bytes, *, ttl_s: float | None = None) -> int:
        """Write ``value`` whatever is there; with ``ttl_s`` the key expires that many seconds later.

        Returns the new revision.
        """
        rev = await self._publish(key, value, last=None, ttl_s=ttl_s)
        assert rev is not None  # no expected revision: never a conflict
        return rev

    async def create(self, key: str, value: bytes, *, ttl_s: float | None = None) -> int | None:
        """Write ``value`` only if the key does not exist (or was deleted or expired).

        Returns the new revision, or None when the key exists (someone else created it).
        """
        latest = await self._latest(key)
        if latest is not None and not latest.deleted:
            return None
        return await self._publish(key, value, last=0 if latest is None else latest.revision, ttl_s=ttl_s)

    async def update(self, key: str, value: bytes, *, last: int, ttl_s: float | None = None) -> int | None:
        """Write ``value`` only if the key's revision is still ``last`` (compare-and-set).

        Returns the new revision, or None when the key changed since ``last`` (or expired).
        """
        return await self._publish(key, value, last=last, ttl_s=ttl_s)

    async def delete(self, key: str, *, last: int | None = None) -> bool:
        """Delete the key (only if its revision is still ``last`` when given); False on a conflict."""
        headers = {_OP: "DEL"}
        if last is not None:
            headers[_EXPECTED_LAST] = str(last)
        try:
            await self._js.publish(self._subject(key), b"", headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return False
            raise KvError(f"{self.name}/{key}: delete refused: {exc.description or exc!r}") from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"{self.name}/{key}: delete failed: {exc!r}") from None
        return True

    async def watch(self, keys: str = ">") -> AsyncIterator[Entry | None]:
        """Each key matching ``keys`` as it is now, then every change; a None after the initial values.

        Expiries arrive as deleted entries (the server's markers). The watch
        follows reconnects and server failures by itself (an ordered consumer).
        """
        try:
            watcher = await self._kv.watch(keys)
        except (TimeoutError, nats.errors.Error) as exc:
            raise KvError(f"{self.name}/{keys}: watch failed: {exc!r}") from None
        try:
            async for raw in watcher:
                if raw is None:
                    yield None
                    continue
                yield Entry(raw.key, b"" if raw.operation else (raw.value or b""), int(raw.revision or 0),
                            deleted=raw.operation is not None)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
