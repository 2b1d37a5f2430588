"""Heartbeats and counters of supervised processes, in one shared-memory table per node.

The supervisor creates the table (``<shm dir>/camfleet.node-<key>.health``,
owner-only, made under a random name and renamed in place, so a file or
symlink planted at the predictable name is replaced, never followed) and
gives each process it starts a slot. The process writes its pid, a
monotonic timestamp, a state code with a reason, and its counters into its
own slot; the supervisor reads every slot on each pass. Nothing is sent,
so a process that hangs simply stops beating, and a reader never blocks a
writer. Each field is an aligned 8-byte value (whole-value stores on x86-64);
the reason text may be read mid-update, which costs at most one odd status line.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camfleet.framebus.segment import create_private_file, shm_dir

SLOTS = 512
"""Most processes one node supervises at once."""

REASON_BYTES = 200

OK = 0
"""State code: working as it should."""
DEGRADED = 1
"""State code: alive but not doing its job (reconnecting, no frames, detector down); see the reason."""

FRAMES, SKIPPED, DET_REQUESTS, INFER_MS, PACKETS, LAG_MS, ERRORS, EXTRA = range(8)
"""Counter indexes: frames handled, frames skipped, detector requests, total inference ms,
packets, last frame lag in ms (a gauge), errors, and a spare (pipelines: live updates applied;
ingest: frames decoded, before the frame-rate limit; recorder: segments written)."""

SLOT_DTYPE = np.dtype([
    ("pid", "<i8"),
    ("beat_ns", "<i8"),
    ("started_ns", "<i8"),
    ("state", "<i8"),
    ("counters", "<f8", (8,)),
    ("reason", f"S{REASON_BYTES}"),
])


def table_path(node_key: str) -> Path:
    """Where the heartbeat table of node ``node_key`` lives."""
    return shm_dir() / f"camfleet.node-{node_key}.health"


@dataclass(frozen=True)
class Beat:
    """What a supervised process last said about itself, as the supervisor reads it.

    The one shape of a heartbeat, whatever wrote it (a slot of the table, or
    a detector's heartbeat file): ``age_s`` is seconds since the last beat
    (None: never), ``state`` :data:`OK` or :data:`DEGRADED` with a
    ``reason``, ``counters`` the process's counters (each process kind names
    its own), ``busy_s`` seconds the process has been inside one blocking
    call (None: not busy, or not reported).
    """

    pid: int
    age_s: float | None
    state: int
    reason: str
    counters: tuple[float, ...]
    busy_s: float | None = None


NEVER = Beat(pid=0, age_s=None, state=OK, reason="", counters=())
"""The beat of a process that has not beaten yet."""


class HeartbeatTable:
    """The supervisor's side: creates the table, hands out slots, reads them."""

    def __init__(self, node_key: str) -> None:
        self.path = table_path(node_key)
        size = SLOTS * SLOT_DTYPE.itemsize
        # the shm directory is shared by every user and the name is predictable: never open what may be
        # planted there (O_CREAT|O_TRUNC would truncate a symlink's target); make it afresh and rename it in
        fd = create_private_file(self.path, size)
        try:
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._slots = np.frombuffer(self._mm, dtype=SLOT_DTYPE)
        self._free = list(range(SLOTS - 1, -1, -1))

    def allocate(self) -> int:
        """A cleared slot for a process about to start."""
        if not self._free:
            raise RuntimeError(f"more than {SLOTS} supervised processes on one node")
        slot = self._free.pop()
        self.clear(slot)
        return slot

    def clear(self, slot: int) -> None:
        """Forget what the slot's previous process wrote (before a restart)."""
        self._slots[slot] = np.zeros((), dtype=SLOT_DTYPE)

    def release(self, slot: int) -> None:
        """Give a slot back when its process is removed for good."""
        self.clear(slot)
        self._free.append(slot)

    def slot(self, slot: int) -> TableSlot:
        """Slot ``slot`` as a beat source of one process."""
        return TableSlot(self, slot)

    def read(self, slot: int) -> Beat:
        """What the slot's process last wrote."""
        row = self._slots[slot].copy()
        beat = int(row["beat_ns"])
        age = (time.monotonic_ns() - beat) / 1e9 if beat else None
        reason = bytes(row["reason"]).rstrip(b"\0").decode("utf-8", "replace")
        return Beat(int(row["pid"]), age, int(row["state"]), reason,
                    tuple(float(x) for x in row["counters"]))

    def close(self) -> None:
        """Unmap and remove the table."""
        self._slots = np.zeros(0, dtype=SLOT_DTYPE)
        with contextlib.suppress(BufferError):
            self._mm.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class TableSlot:
    """One process's slot of a :class:`HeartbeatTable`, as the supervisor sees it."""

    table: HeartbeatTable
    index: int

    def read(self) -> Beat:
        """What the process last wrote."""
        return self.table.read(self.index)

    def clear(self) -> None:
        """Forget the previous process's beats (before a start)."""
        self.table.clear(self.index)

    def release(self) -> None:
        """Give the slot back (the process is gone for good)."""
        self.table.release(self.index)


class Heartbeat:
    """A supervised process's side: beats and counters in its own slot."""

    def __init__(self, path: str | Path, slot: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)  # the table itself, never a link
        try:
            self._mm = mmap.mmap(fd, SLOTS * SLOT_DTYPE.itemsize)
        finally:
            os.close(fd)
        self._row = np.frombuffer(self._mm, dtype=SLOT_DTYPE)[slot : slot + 1]
        self.counters = self._row["counters"][0]
        """The 8 counters, writable in place (``hb.counters[FRAMES] += 1``)."""
        self._row["pid"] = os.getpid()
        self._row["started_ns"] = time.monotonic_ns()
        self._reason = ""

    def beat(self, state: int = OK, reason: str = "") -> None:
        """Say "alive" now, with the state code and (when degraded) why."""
        if reason != self._reason:
            self._row["reason"] = reason.encode("utf-8", "replace")[:REASON_BYTES]
            self._reason = reason
        self._row["state"] = state
        self._row["beat_ns"] = time.monotonic_ns()
