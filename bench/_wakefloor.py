"""The wake-up floor: how fast one process can wake N others on this machine, with nothing else to do.

A publisher (this process) bumps a 32-bit word in a shared-memory file and
wakes it with ``futex(FUTEX_WAKE)``; N subscriber processes sleep on it with
``futex(FUTEX_WAIT)`` and take ``time.time_ns()`` when they wake. Both sides
make the same ctypes system calls the framebus makes, and nothing else: no
locks, no frame, no Python object per message. The latency of the framebus
(or of any scheme that wakes a sleeping Python process) cannot be lower, so
this is the limit to judge the framebus's p99 against on a given machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import time
from pathlib import Path
from typing import Any

from _benchutil import pct
from camfleet.framebus import _sys

_WORD, _STAMP, _STOP = 0, 8, 16  # byte offsets in the shared page
_PAGE = 4096


def _subscriber(path: str, ready: Any, conn: Any) -> None:
    fd = os.open(path, os.O_RDWR)
    m = mmap.mmap(fd, _PAGE)
    anchor = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(anchor)
    word = memoryview(m)[_WORD : _WORD + 4].cast("I")
    stamp = memoryview(m)[_STAMP : _STAMP + 8].cast("q")
    stop = memoryview(m)[_STOP : _STOP + 4].cast("I")
    got: list[tuple[int, int]] = []  # (word value, wake-up time ns)
    seen = word[0]
    ready.set()
    while not stop[0]:
        _sys.futex_wait(addr, seen, 1.0)
        now = time.time_ns()
        value = word[0]
        if value != seen:
            got.append((value, now - stamp[0]))
            seen = value
    conn.send(got)
    conn.close()
    del word, stamp, stop, anchor
    m.close()
    os.close(fd)


def measure(ctx: Any, n_subs: int, fps: float, duration: float) -> dict[str, Any]:
    """Wake ``n_subs`` sleeping processes ``fps`` times a second for ``duration`` s.

    Returns p50/p99 of the wake-up latency in ms, counted from just before the
    wake call (``lat_*``) and from its return (``lat_after_*``, the framebus's
    "from publish() returning"), and the p50/p99 of the wake call itself in µs.
    """
    path = Path("/dev/shm") / f"cfbench-wake-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    procs: list[Any] = []
    try:
        os.ftruncate(fd, _PAGE)
        m = mmap.mmap(fd, _PAGE)
        anchor = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(anchor)
        word = memoryview(m)[_WORD : _WORD + 4].cast("I")
        stamp = memoryview(m)[_STAMP : _STAMP + 8].cast("q")
        stop = memoryview(m)[_STOP : _STOP + 4].cast("I")
        pipes = []
        for _ in range(n_subs):
            ready = ctx.Event()
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_subscriber, args=(str(path), ready, send), daemon=True)
            p.start()
            procs.append(p)
            pipes.append(recv)
            if not ready.wait(60):
                raise TimeoutError("a wake-floor subscriber did not start within 60 s")
        time.sleep(0.2)  # let every subscriber reach its futex_wait
        period = 1.0 / fps
        wake_ns: dict[int, int] = {}
        next_t = time.perf_counter()
        for i in range(1, max(20, round(duration * fps)) + 1):
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.time_ns()
            stamp[0] = t0
            word[0] = i
            _sys.futex_wake(addr)
            wake_ns[i] = time.time_ns() - t0
        time.sleep(0.05)
        stop[0] = 1
        word[0] = 0
        _sys.futex_wake(addr)
        lat: list[float] = []
        after: list[float] = []
        for recv in pipes:
            if not recv.poll(30):
                raise TimeoutError("a wake-floor subscriber did not report within 30 s")
            for value, ns in recv.recv():
                if value in wake_ns:
                    lat.append(ns / 1e6)
                    after.append((ns - wake_ns[value]) / 1e6)
        del word, stamp, stop, anchor
        m.close()
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    wakes = [ns / 1e3 for ns in wake_ns.values()]
    return {
        "n_subs": n_subs,
        "fps": fps,
        "samples": len(lat),
        "lat_p50_ms": pct(lat, 50),
        "lat_p99_ms": pct(lat, 99),
        "lat_after_p50_ms": pct(after, 50),
        "lat_after_p99_ms": pct(after, 99),
        "wake_call_p50_us": pct(wakes, 50),
        "wake_call_p99_us": pct(wakes, 99),
    }

