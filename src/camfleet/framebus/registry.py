"""The subscriber table: registration, uniqueness of names, reclaim of the dead.

Each live subscriber holds an exclusive OFD lock on its entry. The kernel drops
that lock when the subscriber's process dies, however it dies, so an entry
whose lock is free belongs to nobody and is reclaimed. Registration and reclaim
run under the segment's registry mutex (another OFD lock), so they never race.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from . import _sys, watch
from .errors import DuplicateSubscriber, SubscriberLimit
from .layout import KIND_FRAMES, MAX_SUBSCRIBERS, SUB_ACTIVE, SUB_EVICTED, SUB_FREE, LockMap
from .segment import Segment

log = logging.getLogger("camfleet.framebus")


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


SWEEP_S = 0.5
"""Seconds between two sweeps of every ring a process publishes (dead subscribers not yet noticed)."""


class _Sweeper:
    """The one thread per process that reclaims dead subscribers of every ring the process publishes.

    A subscriber's death is noticed at once through a pidfd (:mod:`.watch`, whose thread only
    wakes this one); a sweep every :data:`SWEEP_S` catches the rest (a subscriber that
    registered since the last sweep, or one whose pid is not visible here). One thread waking
    twice a second costs a camera process less than a thread per ring waking four times a
    second (each wake of a Python thread is a context switch and a GIL hand-over: about
    0.15 ms of CPU measured in a pipeline process).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reapers: list[Reaper] = []
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, reaper: Reaper) -> None:
        with self._lock:
            self._reapers.append(reaper)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="camfleet-framebus-reaper",
                                                daemon=True)
                self._thread.start()

    def remove(self, reaper: Reaper) -> None:
        with self._lock:
            if reaper in self._reapers:
                self._reapers.remove(reaper)

    def kick(self) -> None:
        """Sweep now (a watched subscriber exited)."""
        self._kick.set()

    def _run(self) -> None:
        while True:
            self._kick.wait(SWEEP_S)
            self._kick.clear()
            with self._lock:
                reapers = list(self._reapers)
                if not reapers:  # the process closed its last ring; the next one starts a thread again
                    self._thread = None
                    return
            for reaper in reapers:
                try:
                    reaper.sweep()
                except Exception:  # one broken ring must not stop the others' reclaim
                    log.exception("framebus: reclaiming dead subscribers of ring %r failed", reaper.key)


_sweeper = _Sweeper()


def _after_fork() -> None:
    global _sweeper  # the parent's thread and rings do not exist in a forked child
    _sweeper = _Sweeper()


os.register_at_fork(after_in_child=_after_fork)


class Reaper:
    """Frees a publisher's dead subscribers' entries.

    An entry is free again within a second of its owner's death, usually at once
    (see :class:`_Sweeper`); its leases are freed by the kernel at once. :meth:`registry`
    serialises the reclaim and the publisher's own registry edits: they share one
    file description, whose OFD locks do not exclude each other.
    """

    def __init__(self, seg: Segment) -> None:
        self._seg = seg
        self.key = seg.key
        self._lock = threading.Lock()
        self._stopped = False
        self._gen = -1  # registry generation whose subscribers are watched
        self._watches: dict[int, int | None] = {}  # subscriber pid -> death-watch token
        self._sweeper = _sweeper
        self._sweeper.add(self)

    @contextlib.contextmanager
    def registry(self) -> Iterator[None]:
        """Hold the registry mutex against other processes and the reclaim."""
        with self._lock, RegistryLock(self._seg):
            yield

    def reclaim(self) -> list[int]:
        """Free the entries of dead subscribers now; returns their indices."""
        with self.registry():
            return reclaim_dead(self._seg)

    def sweep(self) -> None:
        """Reclaim, then watch the pids of the subscribers registered since the last sweep."""
        with self._lock:
            if self._stopped:
                return
            with RegistryLock(self._seg):
                reclaim_dead(self._seg)
            gen = int(self._seg.u32("reg_gen")[0])
            if gen == self._gen:
                return
            self._gen = gen
            subs = self._seg.subs
            me = os.getpid()
            pids = {int(p) for p in subs["pid"][subs["state"] != SUB_FREE].tolist()} - {me, 0}
            for pid in set(self._watches) - pids:
                watch.unwatch(self._watches.pop(pid))
            for pid in pids - set(self._watches):
                self._watches[pid] = watch.watch_pid(pid, self._sweeper.kick)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopped

    def stop(self) -> None:
        """Stop reclaiming (a reclaim under way finishes first)."""
        self._sweeper.remove(self)
        with self._lock:
            self._stopped = True
            for token in self._watches.values():
                watch.unwatch(token)
            self._watches.clear()
