"""The subscriber table: registration, uniqueness of names, reclaim of the dead.

Each live subscriber holds an exclusive OFD lock on its entry. The kernel drops
that lock when the subscriber's process dies, however it dies, so an entry
whose lock is free belongs to nobody and is reclaimed. Registration and reclaim
run under the segment's registry mutex (another OFD lock), so they never race.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from . import _sys
from .errors import DuplicateSubscriber, SubscriberLimit
from .layout import KIND_FRAMES, MAX_SUBSCRIBERS, SUB_ACTIVE, SUB_EVICTED, SUB_FREE, LockMap
from .segment import Segment


class RegistryLock:
    """Context manager holding a segment's registry mutex."""

    def __init__(self, seg: Segment) -> None:
        self._fd = seg.fd

    def __enter__(self) -> None:
        _sys.lock_blocking(self._fd, LockMap.REGISTRY)

    def __exit__(self, *_exc: object) -> None:
        _sys.unlock(self._fd, LockMap.REGISTRY)


def _bump_generation(seg: Segment) -> None:
    gen = seg.u32("reg_gen")
    gen[0] = (gen[0] + 1) & 0xFFFFFFFF


def _clear_entry(seg: Segment, k: int) -> None:
    _bump_generation(seg)
    seg.subs[k] = np.zeros((), seg.subs.dtype)
    if seg.kind == KIND_FRAMES:
        n = seg.offsets.n_slots
        for base in (seg.offsets.lease_seq, seg.offsets.lease_time):
            view = np.ndarray((n,), np.int64, buffer=seg.meta, offset=base + k * n * 8)
            view[:] = 0


def mark_evicted(seg: Segment, k: int) -> None:
    """Flag entry ``k`` evicted; the caller holds the registry mutex."""
    seg.subs["state"][k] = SUB_EVICTED
    _bump_generation(seg)


def reclaim_dead(seg: Segment, *, skip: int | None = None) -> list[int]:
    """Free every entry whose owner is gone; the caller holds the registry mutex.

    ``skip`` is the caller's own entry (its lock does not conflict with itself).
    Returns the indices freed.
    """
    freed: list[int] = []
    for k in np.flatnonzero(seg.subs["state"] != SUB_FREE).tolist():
        if k == skip:
            continue
        if _sys.lock_holder(seg.fd, LockMap.subscriber(k)) is None:
            _clear_entry(seg, k)
            freed.append(k)
    return freed


def register(seg: Segment, name: str, mode: int, max_held: int, *, acked: int = 0) -> int:
    """Claim a subscriber entry for ``name`` and return its index.

    ``acked`` is the sequence the subscriber counts as already taken (the
    ``wait`` policy keeps every newer frame for it).

    Raises :class:`DuplicateSubscriber` if a live subscriber has the same name
    and :class:`SubscriberLimit` if the table is full or, for frame rings, the
    leases asked for would leave the publisher no slot to write.
    """
    raw = name.encode()
    if not raw or len(raw) > 47:
        raise ValueError(f"subscriber name {name!r} must be 1-47 bytes")
    with RegistryLock(seg):
        reclaim_dead(seg)
        subs = seg.subs
        active = np.flatnonzero(subs["state"] != SUB_FREE)
        for k in active.tolist():
            if bytes(subs["name"][k]) == raw:
                raise DuplicateSubscriber(
                    f"ring {seg.key!r}: a live subscriber named {name!r} is already registered "
                    f"(pid {int(subs['pid'][k])})"
                )
        if seg.kind == KIND_FRAMES:
            n_slots = seg.offsets.n_slots
            held = int(subs["max_held"][active].sum()) if active.size else 0
            if held + max_held > n_slots - 1:
                raise SubscriberLimit(
                    f"ring {seg.key!r}: {name!r} asks to hold {max_held} frame(s) but "
                    f"{held} of the ring's {n_slots} slots are already promised to other "
                    f"subscribers and one must stay free for the publisher; create the ring "
                    f"with more slots or lower max_held"
                )
        for k in np.flatnonzero(subs["state"] == SUB_FREE).tolist():
            if not _sys.try_lock(seg.fd, LockMap.subscriber(k)):
                continue
            _clear_entry(seg, k)
            subs["pid"][k] = os.getpid()
            subs["mode"][k] = mode
            subs["max_held"][k] = max_held
            subs["name"][k] = raw
            subs["registered_ns"][k] = time.time_ns()
            subs["acked"][k] = acked
            subs["state"][k] = SUB_ACTIVE
            _bump_generation(seg)
            return k
        raise SubscriberLimit(f"ring {seg.key!r}: all {MAX_SUBSCRIBERS} subscriber entries are in use")


def unregister(seg: Segment, k: int) -> None:
    """Free this process's entry ``k`` and drop its liveness lock."""
    with RegistryLock(seg):
        _clear_entry(seg, k)
    _sys.unlock(seg.fd, LockMap.subscriber(k))


class Reaper:
    """A publisher's background thread that frees dead subscribers' entries.

    Runs :func:`reclaim_dead` every ``period`` seconds, so an entry is free
    again within a second of its owner's death (its leases are freed by the
    kernel at once). :meth:`registry` serialises this thread and the
    publisher's own registry edits: they share one file description, whose
    OFD locks do not exclude each other.
    """

    def __init__(self, seg: Segment, period: float = 0.25) -> None:
        self._seg = seg
        self._period = period
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"camfleet-reaper-{seg.key}", daemon=True
        )
        self._thread.start()

    @contextlib.contextmanager
    def registry(self) -> Iterator[None]:
        """Hold the registry mutex against other processes and this thread."""
        with self._lock, RegistryLock(self._seg):
            yield

    def reclaim(self) -> list[int]:
        """Free the entries of dead subscribers now; returns their indices."""
        with self.registry():
            return reclaim_dead(self._seg)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.reclaim()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most 2 s)."""
        self._stop.set()
        self._thread.join(timeout=2)
