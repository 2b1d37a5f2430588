"""Read-only views of the rings on this machine, for ``camfleet bus`` and metrics.

Inspection reads a snapshot of a segment's header and subscriber table; it
never registers, leases or writes, so it cannot disturb a running ring.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import _sys
from .errors import FramebusError
from .format import PixelFormat
from .layout import (
    KIND_FRAMES,
    KIND_NAMES,
    MAX_SUBSCRIBERS,
    MODE_NAMES,
    POLICY_NAMES,
    SUB_DTYPE,
    SUB_EVICTED,
    SUB_FREE,
    LockMap,
    Offsets,
)
from .segment import list_segments, segment_path, validate_segment


@dataclass(frozen=True)
class SubscriberInfo:
    """One registered subscriber as seen in the ring's table."""

    index: int
    name: str
    pid: int
    mode: str
    alive: bool
    evicted: bool
    held: int
    delivered: int
    skipped: int
    gaps: int
    overruns: int
    revocations: int
    last_seq: int


@dataclass(frozen=True)
class RingInfo:
    """A ring segment: its publisher, geometry, counters and subscribers.

    ``fps`` is the publisher's recent publish rate in frames/s (frame rings);
    ``size_bytes`` is the segment's size; ``error`` is set when the segment
    could not be read (and then most other fields are empty).
    """

    key: str
    kind: str
    path: str
    publisher_pid: int = 0
    publisher_alive: bool = False
    description: str = ""
    policy: str = ""
    slots: int = 0
    size_bytes: int = 0
    last_seq: int = 0
    last_pts: int = 0
    fps: float = 0.0
    evictions: int = 0
    revocations: int = 0
    subscribers: list[SubscriberInfo] = field(default_factory=list)
    error: str = ""


def ring_info(key: str, kind: int = KIND_FRAMES, path: Path | None = None) -> RingInfo:
    """Snapshot of ring ``key`` (its ``kind`` segment); errors are reported in ``error``."""
    path = path or segment_path(key, kind)
    base = RingInfo(key=key, kind=KIND_NAMES[kind], path=str(path))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        return _with(base, error=f"cannot open {path}: {exc.strerror}")
    try:
        try:
            header = validate_segment(fd, key, kind, path)
        except FramebusError as exc:
            return _with(base, error=str(exc))
        n = int(header["n_slots"])
        offsets = Offsets.compute(kind, n)
        subs = np.frombuffer(
            os.pread(fd, MAX_SUBSCRIBERS * SUB_DTYPE.itemsize, offsets.subs), SUB_DTYPE
        )
        held_counts = np.zeros(MAX_SUBSCRIBERS, np.int64)
        if kind == KIND_FRAMES:
            leases = np.frombuffer(
                os.pread(fd, MAX_SUBSCRIBERS * n * 8, offsets.lease_time), np.int64
            ).reshape(MAX_SUBSCRIBERS, n)
            held_counts = (leases != 0).sum(axis=1)
        infos = []
        for k in np.flatnonzero(subs["state"] != SUB_FREE).tolist():
            s = subs[k]
            infos.append(
                SubscriberInfo(
                    index=k,
                    name=bytes(s["name"]).decode(errors="replace"),
                    pid=int(s["pid"]),
                    mode=MODE_NAMES.get(int(s["mode"]), "?"),
                    alive=_sys.lock_holder(fd, LockMap.subscriber(k)) is not None,
                    evicted=int(s["state"]) == SUB_EVICTED,
                    held=int(held_counts[k]),
                    delivered=int(s["delivered"]),
                    skipped=int(s["skipped"]),
                    gaps=int(s["gaps"]),
                    overruns=int(s["overruns"]),
                    revocations=int(s["revocations"]),
                    last_seq=int(s["last_seq"]),
                )
            )
        if kind == KIND_FRAMES:
            pix = PixelFormat(int(header["pix_fmt"])).ffmpeg_name
            desc = f"{int(header['width'])}x{int(header['height'])} {pix}"
        else:
            codec = bytes(header["codec"].item()).decode(errors="replace")
            desc = f"{codec or '?'} {int(header['capacity']) // 2**20} MiB buffer"
        return RingInfo(
            key=key,
            kind=KIND_NAMES[kind],
            path=str(path),
            publisher_pid=int(header["pub_pid"]),
            publisher_alive=_sys.lock_holder(fd, LockMap.PUBLISHER) is not None,
            description=desc,
            policy=POLICY_NAMES.get(int(header["policy"]), "?") if kind == KIND_FRAMES else "",
            slots=n,
            size_bytes=int(header["total_bytes"]),
            last_seq=int(header["gseq"]),
            last_pts=int(header["last_pts"]),
            fps=int(header["fps_milli"]) / 1000,
            evictions=int(header["evictions"]),
            revocations=int(header["revocations"]),
            subscribers=infos,
        )
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _with(info: RingInfo, *, error: str) -> RingInfo:
    return replace(info, error=error)


def list_rings() -> list[RingInfo]:
    """Every ring segment on this machine, frame and packet rings alike."""
    return [ring_info(key, kind, path) for key, kind, path in list_segments()]
