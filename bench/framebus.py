"""Benchmark: camfleet.framebus against memcpy, multiprocessing.Queue, Frigate-style shm and ZeroMQ.

Run from the repository root::

    .venv/bin/python bench/framebus.py --quick          # 1080p, 1 and 4 subscribers, about a minute
    .venv/bin/python bench/framebus.py                  # 1080p and 4K, 1/4/8 subscribers
    .venv/bin/python bench/framebus.py --json out.json  # raw results (default artifacts/bench-framebus.json)
    .venv/bin/python bench/framebus.py --quick --variants camfleet frigate --repeat 3   # issue 13 verdicts

Every variant moves packed yuv420p frames from one publisher process to N
subscriber processes (``spawn`` context, one process each) and is measured the
same way; see ``METHOD`` below (also printed and stored in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import queue
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import _wakefloor
from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from _benchutil import cpu_s as _cpu_s
from _benchutil import pct as _pct
from _benchutil import summary
from camfleet import framebus as fb

METHOD = {
    "delivery": (
        "lossless in every variant, so frames/s are comparable: camfleet policy='wait' (see --policy) + "
        "mode='sequential'; (b) and (c) use one bounded multiprocessing.Queue(maxsize=slots-2) per "
        "subscriber (put blocks when full); (d) is an XPUB socket (PUB plus options) with XPUB_NODROP=1 and "
        "SNDHWM=RCVHWM=slots-2 over ipc://, send(copy=False)/recv(copy=False), so send blocks at the "
        "high-water mark instead of dropping. slots = max(8, subs+4) for every variant. 'drops' counts "
        "gaps in the sequence numbers each subscriber saw"
    ),
    "frames": (
        "packed yuv420p, one (h*3/2, w) uint8 array, the same source array every time (for camfleet and "
        "(c) its first 8 bytes carry the sequence number, checked by the subscribers: torn reads)"
    ),
    "consume": (
        "every subscriber of every variant does the same work per frame: sum one byte of every 4 KiB "
        "page of the frame; it is timed apart and not part of 'read'"
    ),
    "fps/sub": (
        "throughput phase (--duration s, after a warm-up of 2*slots frames): the publisher publishes as "
        "fast as backpressure lets it; frames a subscriber received / its phase wall time, mean over "
        "subscribers. (a) memcpy: 1e6 / copy µs"
    ),
    "pub µs": (
        "median wall time of one publish call in the paced phase (no backpressure there): camfleet "
        "publish(); (b) Queue.put into each queue; (c) copy into the shm slot + put of the slot name into "
        "each queue; (d) zmq send(copy=False). (b) and (d) are asynchronous (pickling/transfer run in "
        "feeder/IO threads): see pubCPU/f. Compare with '(a) memcpy paced' (same pacing); '(a) memcpy' "
        "is a tight loop, where caches stay hot"
    ),
    "pubCPU/f": "publisher process CPU time (all threads) per frame in the throughput phase, µs",
    "read µs": (
        "read phase (after the throughput phase): the publisher publishes a burst of slots-3 frames while "
        "the subscribers wait at a barrier, then each subscriber reads the burst with non-blocking "
        "receives while the publisher is idle; repeated (>= 3 rounds, up to 12/30). A sample is the wall "
        "time of a receive that found a frame ready (camfleet next(timeout=0) + frame.array; (b)/(c) "
        "Queue.get_nowait (+ np view for (c)); (d) recv_multipart(NOBLOCK, copy=False) + np.frombuffer) "
        "plus release() and dropping the last reference; receives that had to block are not sampled. "
        "(b)'s sample includes the pipe transfer and unpickling of the whole frame, which streams from "
        "the feeder thread. Median per subscriber, mean over subscribers. rdCPU µs: the same spans in "
        "thread CPU time. The JSON also has the same measure taken during the throughput phase "
        "(read_tput_us, fewer samples, under contention)"
    ),
    "latency": (
        "paced phase at min(--lat-fps, half the publisher's throughput) fps ('lat fps'): the publisher "
        "stamps capture_ns=time.time_ns() just before the publish call, each subscriber takes "
        "time.time_ns() - capture_ns when its blocking receive returns; p50/p99 pooled over subscribers. "
        "The JSON also has it counted from the return of publish() (lat_after_publish_*)"
    ),
    "targets": (
        "publish <= 2x memcpy compares the cost of a publish, i.e. the thread CPU time of the call "
        "(on this 2-core machine the wall time also holds preemption by the subscribers that the call "
        "itself wakes, and by other load); it is checked twice and PASS needs both: back-to-back "
        "(throughput-phase publish() calls that did not block, against '(a) memcpy') and paced (the "
        "paced phase, against '(a) memcpy paced'); the wall-time ratios are printed as well. Read "
        "overhead: 'read µs' (wall). p99 (issue 13): counted from the return of publish(), the median "
        "over the repetitions of each run's p99, judged against the wake-up floor (bench/_wakefloor.py: "
        "a process futex-waking N sleeping ones, nothing else, same pacing, measured right before each "
        "repetition). Ratios (issue 13: 1 sub >= 1x, 4 subs >= 1.5x Frigate's scheme): fps/sub; with "
        "--repeat N, each camfleet run is paired with the baseline run right after it and the verdict "
        "takes the median ratio of the pairs, so load that drifts between runs cancels out; CPU per "
        "frame (publisher + subscribers, throughput phase) is printed next to it"
    ),
    "CPU%": (
        "psutil user+system CPU time of each process (all threads) over the throughput phase / its wall "
        "time; subCPU% is the mean over subscribers (the paced phase's are in the JSON)"
    ),
}

# message kinds: a frame, then the markers that end the warm-up, throughput, paced and read phases,
# and the marker that ends one burst of the read phase
KIND_DATA, KIND_END0, KIND_END1, KIND_END2, KIND_END_READ, KIND_BURST = 0, 1, 2, 3, 4, 5
PAGE = 4096
HDR = struct.Struct("<qqq")  # zmq header: kind, seq, capture_ns
BARRIER_TIMEOUT = 60.0  # s; setup of 9 spawned processes on 2 cores takes a few seconds
RECV_TIMEOUT = 10.0  # s; a subscriber gives up when no frame comes for this long
PUT_TIMEOUT = 10.0  # s; a publisher gives up when a bounded queue stays full this long
ACK_TIMEOUT = 2.0  # s; camfleet wait policy: evict a subscriber only when it stalls this long
VARIANTS = ("camfleet", "queue", "frigate", "zmq")
LABELS = {
    "camfleet": "camfleet",
    "queue": "(b) mp.Queue",
    "frigate": "(c) shm+Queue",
    "zmq": "(d) zmq ipc",
    "memcpy": "(a) memcpy",
    "memcpy-ring": "(a) memcpy ring",
    "memcpy-paced": "(a) memcpy paced",
}
RESOLUTIONS = {"1080p": (1920, 1080), "4K": (3840, 2160)}


# --------------------------------------------------------------------------- helpers
def _frame_shape(spec: dict[str, Any]) -> tuple[int, int]:
    return (spec["height"] * 3 // 2, spec["width"])


def _make_source(shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)


def _consume(arr: np.ndarray) -> int:
    """The subscribers' work, identical for all variants: one byte of every 4 KiB page."""
    return int(arr.reshape(-1)[::PAGE].sum())


def _stamp_of(arr: np.ndarray) -> int:
    return int(arr.reshape(-1)[:8].view(np.uint64)[0])


def _summary_us(samples_ns: Sequence[int]) -> dict[str, Any]:
    """Percentiles in microseconds of a list of nanosecond samples."""
    return summary(samples_ns, 1e-3)


def _shm_name(spec: dict[str, Any], i: int) -> str:
    return f"{spec['shm_prefix']}{i}"


# --------------------------------------------------------------------------- publishers
class _CamfleetTx:
    stamps = True

    def __init__(self, spec: dict[str, Any], _queues: list[Any]) -> None:
        fmt = fb.FrameFormat.packed_format(spec["width"], spec["height"], "yuv420p")
        self.pub = fb.FramePublisher(
            spec["key"], fmt, slots=spec["slots"], policy=spec["policy"], ack_timeout=ACK_TIMEOUT
        )

    def wait_subscribers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pub.stats().subscribers < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.pub.stats().subscribers}/{n} subscribers registered")
            time.sleep(0.01)

    def send(self, kind: int, seq: int, capture_ns: int, src: np.ndarray) -> None:
        if kind == KIND_DATA:
            self.pub.publish(src, pts=seq, capture_ns=capture_ns)
        else:  # markers: an empty slot with a negative pts, no copy
            self.pub.begin()
            self.pub.commit(pts=-kind, capture_ns=capture_ns)

    def blocked_count(self) -> int:
        # PublisherStats.waits, read directly if possible: stats() costs a few µs in the hot loop
        waits = getattr(self.pub, "_waits", None)
        return int(waits) if waits is not None else self.pub.stats().waits

    def extra(self) -> dict[str, Any]:
        s = self.pub.stats()
        return {
            "waits": int(s.waits),
            "wait_s": float(s.wait_s),
            "evictions": int(s.evictions),
            "revocations": int(s.revocations),
        }

    def close(self) -> None:
        self.pub.close()


class _QueueTx:
    stamps = False  # Queue.put pickles later, in the feeder thread: the source must not change

    def __init__(self, _spec: dict[str, Any], queues: list[Any]) -> None:
        self.queues = queues

    def wait_subscribers(self, n: int, timeout: float) -> None:
        pass

    def send(self, kind: int, seq: int, capture_ns: int, src: np.ndarray) -> None:
        self._fan_out((kind, seq, capture_ns, src if kind == KIND_DATA else None))

    def _fan_out(self, item: tuple[Any, ...]) -> None:
        for q in self.queues:
            q.put(item, timeout=PUT_TIMEOUT)

    def blocked_count(self) -> int:
        return 0

    def extra(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        for q in self.queues:
            q.close()
            q.cancel_join_thread()  # never hang at exit; every item was consumed before close


class _FrigateTx(_QueueTx):
    """Frigate's scheme: frame copied into a named shm slot, the slot name sent on a Queue per subscriber.

    With ``slots`` slots and queues of ``maxsize = slots - 2``, a slot is never rewritten while a
    subscriber may still read it: a subscriber holding frame j has at most slots-2 later frames
    queued, so the publisher is at most writing frame j + slots - 1.
    """

    stamps = True

    def __init__(self, spec: dict[str, Any], queues: list[Any]) -> None:
        super().__init__(spec, queues)
        shape = _frame_shape(spec)
        nbytes = shape[0] * shape[1]
        self.shms: list[shared_memory.SharedMemory] = []
        self.views: list[np.ndarray] = []
        self.names: list[str] = []
        for i in range(spec["slots"]):
            shm = shared_memory.SharedMemory(name=_shm_name(spec, i), create=True, size=nbytes)
            self.shms.append(shm)
            self.names.append(shm.name)
            view = np.ndarray(shape, np.uint8, buffer=shm.buf)
            view[...] = 0  # fault the pages in now, as camfleet's fallocate does
            self.views.append(view)
        self.n_slots = spec["slots"]

    def send(self, kind: int, seq: int, capture_ns: int, src: np.ndarray) -> None:
        if kind == KIND_DATA:
            slot = seq % self.n_slots
            np.copyto(self.views[slot], src)
            self._fan_out((kind, self.names[slot], seq, capture_ns))
        else:
            self._fan_out((kind, None, seq, capture_ns))

    def close(self) -> None:
        super().close()
        self.views.clear()
        for shm in self.shms:
            with contextlib.suppress(BufferError):
                shm.close()
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()


class _ZmqTx:
    stamps = False  # send(copy=False) hands the buffer to the IO thread: the source must not change

    def __init__(self, spec: dict[str, Any], _queues: list[Any]) -> None:
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context(io_threads=1)
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # one subscription message per subscriber
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)  # block at the high-water mark instead of dropping
        self.sock.setsockopt(zmq.SNDHWM, spec["hwm"])
        self.sock.setsockopt(zmq.SNDTIMEO, int(PUT_TIMEOUT * 1000))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(spec["endpoint"])

    def wait_subscribers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {seen}/{n} zmq subscriptions arrived")
            if self.sock.poll(int(left * 1000) + 1, self.zmq.POLLIN) and self.sock.recv()[:1] == b"\x01":
                seen += 1

    def send(self, kind: int, seq: int, capture_ns: int, src: np.ndarray) -> None:
        header = HDR.pack(kind, seq, capture_ns)
        if kind == KIND_DATA:
            self.sock.send(header, self.zmq.SNDMORE)
            self.sock.send(src, copy=False)
        else:
            self.sock.send(header)

    def blocked_count(self) -> int:
        return 0

    def extra(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


# --------------------------------------------------------------------------- subscribers
def _wait_queue(q: Any, timeout: float) -> bool:
    """Wait until a multiprocessing.Queue has data, without taking it (public API only: polls)."""
    deadline = time.monotonic() + timeout
    while q.empty():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True


Msg = tuple[int, int, int, Any, Any]  # kind, seq, capture_ns, array or None, release handle


class _CamfleetRx:
    verify = True

    def __init__(self, spec: dict[str, Any], idx: int, _q: Any) -> None:
        self.sub = fb.subscribe(spec["key"], mode="sequential", name=f"bench-sub-{idx}", connect_timeout=20)
        self.overrun_lost = 0

    def _wrap(self, f: fb.Frame) -> Msg:
        pts = int(f.pts)
        if pts < 0:
            return (-pts, 0, int(f.capture_ns), None, f)
        return (KIND_DATA, pts, int(f.capture_ns), f.array, f)

    def try_recv(self) -> Msg | None:
        try:
            return self._wrap(self.sub.next(timeout=0))
        except fb.FrameTimeout:
            return None
        except fb.Overrun as exc:
            self.overrun_lost += exc.lost
            return None

    def recv(self, timeout: float) -> Msg | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._wrap(self.sub.next(timeout=max(deadline - time.monotonic(), 0.0)))
            except fb.FrameTimeout:
                return None
            except fb.Overrun as exc:
                self.overrun_lost += exc.lost

    @staticmethod
    def release(handle: Any) -> None:
        handle.release()

    @staticmethod
    def wait_ready(_timeout: float) -> bool:
        return False  # frames are in the ring as soon as publish() returns: nothing in transit

    def extra(self) -> dict[str, Any]:
        s = self.sub.stats()
        return {"overrun_lost": self.overrun_lost, "delivered": int(s.delivered), "gaps": int(s.gaps)}

    def close(self) -> None:
        self.sub.close()


class _QueueRx:
    verify = False

    def __init__(self, _spec: dict[str, Any], _idx: int, q: Any) -> None:
        self.q = q

    def wait_ready(self, timeout: float) -> bool:
        return _wait_queue(self.q, timeout)

    def try_recv(self) -> Msg | None:
        try:
            kind, seq, cap, arr = self.q.get_nowait()
        except queue.Empty:
            return None
        return (kind, seq, cap, arr, None)

    def recv(self, timeout: float) -> Msg | None:
        try:
            kind, seq, cap, arr = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        return (kind, seq, cap, arr, None)

    @staticmethod
    def release(handle: Any) -> None:
        pass

    def extra(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.q.close()
        self.q.cancel_join_thread()


class _FrigateRx:
    verify = True

    def __init__(self, spec: dict[str, Any], _idx: int, q: Any) -> None:
        self.q = q
        self.shape = _frame_shape(spec)
        self.cache: dict[str, shared_memory.SharedMemory] = {}

    def _wrap(self, item: tuple[int, str | None, int, int]) -> Msg:
        kind, name, seq, cap = item
        if kind != KIND_DATA or name is None:
            return (kind, seq, cap, None, None)
        shm = self.cache.get(name)
        if shm is None:  # map each slot once, then reuse the mapping
            shm = self.cache[name] = shared_memory.SharedMemory(name=name)
        return (kind, seq, cap, np.ndarray(self.shape, np.uint8, buffer=shm.buf), None)

    def wait_ready(self, timeout: float) -> bool:
        return _wait_queue(self.q, timeout)

    def try_recv(self) -> Msg | None:
        try:
            return self._wrap(self.q.get_nowait())
        except queue.Empty:
            return None

    def recv(self, timeout: float) -> Msg | None:
        try:
            return self._wrap(self.q.get(timeout=timeout))
        except queue.Empty:
            return None

    @staticmethod
    def release(handle: Any) -> None:
        pass

    def extra(self) -> dict[str, Any]:
        return {"mapped_slots": len(self.cache)}

    def close(self) -> None:
        self.q.close()
        self.q.cancel_join_thread()
        for shm in self.cache.values():
            with contextlib.suppress(BufferError):
                shm.close()
        self.cache.clear()


class _ZmqRx:
    verify = False

    def __init__(self, spec: dict[str, Any], _idx: int, _q: Any) -> None:
        import zmq

        self.zmq = zmq
        self.shape = _frame_shape(spec)
        self.ctx = zmq.Context(io_threads=1)
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, spec["hwm"])
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(spec["endpoint"])
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")

    def _wrap(self, parts: list[Any]) -> Msg:
        kind, seq, cap = HDR.unpack(parts[0].bytes)
        if len(parts) < 2:
            return (kind, seq, cap, None, None)
        arr = np.frombuffer(parts[1].buffer, np.uint8).reshape(self.shape)
        return (kind, seq, cap, arr, parts)

    def wait_ready(self, timeout: float) -> bool:
        return bool(self.sock.poll(int(timeout * 1000), self.zmq.POLLIN))

    def try_recv(self) -> Msg | None:
        try:
            return self._wrap(self.sock.recv_multipart(self.zmq.NOBLOCK, copy=False))
        except self.zmq.Again:
            return None

    def recv(self, timeout: float) -> Msg | None:
        if not self.sock.poll(int(timeout * 1000), self.zmq.POLLIN):
            return None
        return self._wrap(self.sock.recv_multipart(copy=False))

    @staticmethod
    def release(handle: Any) -> None:
        pass

    def extra(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


TX: dict[str, Callable[[dict[str, Any], list[Any]], Any]] = {
    "camfleet": _CamfleetTx,
    "queue": _QueueTx,
    "frigate": _FrigateTx,
    "zmq": _ZmqTx,
}
RX: dict[str, Callable[[dict[str, Any], int, Any], Any]] = {
    "camfleet": _CamfleetRx,
    "queue": _QueueRx,
    "frigate": _FrigateRx,
    "zmq": _ZmqRx,
}


# --------------------------------------------------------------------------- child processes
def _publisher_main(spec: dict[str, Any], barrier: Any, results: Any, queues: list[Any]) -> None:
    out: dict[str, Any] = {"role": "pub", "pid": os.getpid()}
    tx = None
    try:
        tx = TX[spec["variant"]](spec, queues)
        src = _make_source(_frame_shape(spec))
        stamp = src.reshape(-1)[:8].view(np.uint64)
        proc = psutil.Process()
        n_subs = spec["n_subs"]
        barrier.wait(BARRIER_TIMEOUT)  # 1: everyone set up
        tx.wait_subscribers(n_subs, BARRIER_TIMEOUT)
        seq = 0

        last_cpu_ns = 0  # thread CPU time of the last publish call

        def publish(kind: int = KIND_DATA) -> int:
            nonlocal seq, last_cpu_ns
            if kind == KIND_DATA:
                seq += 1
                if tx.stamps:
                    stamp[0] = seq
            c0 = time.thread_time_ns()
            cap = time.time_ns()
            t0 = time.perf_counter_ns()
            tx.send(kind, seq, cap, src)
            dt = time.perf_counter_ns() - t0
            last_cpu_ns = time.thread_time_ns() - c0
            return dt

        # warm-up: fault in every slot/buffer on both sides, start feeder/IO threads
        for _ in range(spec["warmup"]):
            publish()
        publish(KIND_END0)
        barrier.wait(BARRIER_TIMEOUT)  # 2: warm-up drained

        # throughput phase: as fast as backpressure allows
        tput_ns: list[int] = []
        unblocked_ns: list[int] = []
        unblocked_cpu_ns: list[int] = []
        cpu0, w0 = _cpu_s(proc), time.perf_counter()
        deadline = w0 + spec["duration"]
        while time.perf_counter() < deadline:
            b0 = tx.blocked_count()
            dt = publish()
            tput_ns.append(dt)
            if tx.blocked_count() == b0:
                unblocked_ns.append(dt)
                unblocked_cpu_ns.append(last_cpu_ns)
        publish(KIND_END1)
        wall, cpu = time.perf_counter() - w0, _cpu_s(proc) - cpu0
        frames = len(tput_ns)
        fps = frames / wall
        out["throughput"] = {
            "frames": frames,
            "wall_s": wall,
            "fps": fps,
            "cpu_s": cpu,
            "cpu_pct": 100 * cpu / wall,
            "cpu_us_per_frame": 1e6 * cpu / max(frames, 1),
            "publish_us": _summary_us(tput_ns),
            "publish_unblocked_us": _summary_us(unblocked_ns),
            "publish_unblocked_cpu_us": _summary_us(unblocked_cpu_ns),
        }
        barrier.wait(BARRIER_TIMEOUT)  # 3: throughput phase drained

        # read phase: bursts of frames published while the subscribers wait, then read by them with
        # non-blocking receives while the publisher is idle, so reads are measured on ready frames
        burst = spec["burst"]
        rounds = 0
        w0 = time.perf_counter()
        while True:
            for _ in range(burst):
                publish()
            rounds += 1
            last = rounds >= spec["burst_rounds_max"] or (
                rounds >= 3 and time.perf_counter() - w0 > spec["burst_seconds"]
            )
            publish(KIND_END_READ if last else KIND_BURST)
            barrier.wait(BARRIER_TIMEOUT)  # the burst is out: subscribers read it
            barrier.wait(BARRIER_TIMEOUT)  # every subscriber has read it
            if last:
                break
        out["read_phase"] = {"rounds": rounds, "burst": burst, "wall_s": time.perf_counter() - w0}

        # paced phase, for latency and the unloaded publish cost
        lat_fps = max(1.0, min(spec["lat_fps"], fps / 2))
        n_lat = max(20, round(spec["lat_duration"] * lat_fps))
        period = 1.0 / lat_fps
        paced_ns: list[int] = []
        paced_cpu_ns: list[int] = []
        first_paced = seq + 1
        cpu0, w0 = _cpu_s(proc), time.perf_counter()
        next_t = w0
        for _ in range(n_lat):
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            paced_ns.append(publish())
            paced_cpu_ns.append(last_cpu_ns)
        publish(KIND_END2)
        wall, cpu = time.perf_counter() - w0, _cpu_s(proc) - cpu0
        out["paced"] = {
            "fps": lat_fps,
            "frames": n_lat,
            "wall_s": wall,
            "cpu_pct": 100 * cpu / wall,
            "publish_us": _summary_us(paced_ns),
            "publish_cpu_us": _summary_us(paced_cpu_ns),
            "first_seq": first_paced,
            "publish_each_us": [round(x / 1e3, 1) for x in paced_ns],
        }
        barrier.wait(BARRIER_TIMEOUT)  # 4: all frames received
        out["extra"] = tx.extra()
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        barrier.abort()
    finally:
        if tx is not None:
            try:
                tx.close()
            except Exception as exc:
                out.setdefault("error", f"close: {type(exc).__name__}: {exc}")
        results.put(out)


def _receive_phase(
    rx: Any,
    spec: dict[str, Any],
    end_kind: int,
    state: dict[str, int],
    *,
    paced: bool = False,
    barrier: Any = None,
) -> dict[str, Any]:
    """Receive until the ``end_kind`` marker; returns the phase's measurements.

    ``paced``: blocking receives only, latency measured. ``barrier``: the read phase, in bursts: wait
    for each burst to be published, read it to its marker, wait for the other subscribers.
    """
    read_ns: list[int] = []
    read_cpu_ns: list[int] = []
    consume_ns: list[int] = []
    lat_ns: list[int] = []
    lat_seq: list[int] = []
    frames = blocked = 0
    proc = psutil.Process()
    cpu0, w0 = _cpu_s(proc), time.perf_counter()
    verify = rx.verify
    clock = time.perf_counter_ns
    tclock = time.thread_time_ns
    if barrier is not None:
        barrier.wait(BARRIER_TIMEOUT)  # the first burst is out
    while True:
        msg = None
        c0 = t0 = t1 = c1 = 0
        if not paced:
            for _attempt in range(2):
                c0 = tclock()
                t0 = clock()
                msg = rx.try_recv()
                t1 = clock()
                c1 = tclock()
                # read phase: a frame may still be in transit (zmq, Queue feeder): wait until one is
                # there without taking it, then time the receive again
                if msg is not None or barrier is None or not rx.wait_ready(RECV_TIMEOUT):
                    break
        ready = msg is not None
        if msg is None:
            msg = rx.recv(RECV_TIMEOUT)
            if msg is None:
                raise TimeoutError(f"no frame within {RECV_TIMEOUT} s (after {frames} frames)")
            blocked += 1
        received_ns = time.time_ns()
        kind, seq, cap, arr, handle = msg
        msg = None
        if kind != KIND_DATA:
            rx.release(handle)
            if barrier is not None and kind == KIND_BURST:
                barrier.wait(BARRIER_TIMEOUT)  # this burst is read everywhere
                barrier.wait(BARRIER_TIMEOUT)  # the next one is out
                continue
            if kind != end_kind:
                raise RuntimeError(f"unexpected marker {kind} while waiting for {end_kind}")
            if barrier is not None:
                barrier.wait(BARRIER_TIMEOUT)
            break
        if paced:
            lat_ns.append(received_ns - cap)
            lat_seq.append(seq)
        t2 = clock()
        state["checksum"] += _consume(arr)
        if verify and _stamp_of(arr) != seq:
            state["torn"] += 1
        t3 = clock()
        c3 = tclock()
        arr = None
        rx.release(handle)
        handle = None  # dropping the last reference frees a received buffer: part of the read cost
        c4 = tclock()
        t4 = clock()
        if ready:
            read_ns.append((t1 - t0) + (t4 - t3))
            read_cpu_ns.append((c1 - c0) + (c4 - c3))
        consume_ns.append(t3 - t2)
        if seq != state["last"] + 1:
            state["gaps"] += max(seq - state["last"] - 1, 0)
            state["disorder"] += int(seq <= state["last"])
        state["last"] = max(state["last"], seq)
        frames += 1
    wall, cpu = time.perf_counter() - w0, _cpu_s(proc) - cpu0
    return {
        "frames": frames,
        "blocked_receives": blocked,
        "wall_s": wall,
        "fps": frames / wall if wall > 0 else 0.0,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / wall if wall > 0 else 0.0,
        "read_us": _summary_us(read_ns),
        "read_cpu_us": _summary_us(read_cpu_ns),
        "consume_us": _summary_us(consume_ns),
        "latency_us": [round(x / 1e3, 1) for x in lat_ns],
        "latency_seq": lat_seq,
    }


def _subscriber_main(spec: dict[str, Any], idx: int, barrier: Any, results: Any, q: Any) -> None:
    out: dict[str, Any] = {"role": "sub", "idx": idx, "pid": os.getpid()}
    rx = None
    state = {"last": 0, "gaps": 0, "torn": 0, "disorder": 0, "checksum": 0}
    try:
        rx = RX[spec["variant"]](spec, idx, q)
        barrier.wait(BARRIER_TIMEOUT)  # 1
        out["warmup"] = _receive_phase(rx, spec, KIND_END0, state, paced=False)
        barrier.wait(BARRIER_TIMEOUT)  # 2
        out["throughput"] = _receive_phase(rx, spec, KIND_END1, state, paced=False)
        barrier.wait(BARRIER_TIMEOUT)  # 3
        out["read_phase"] = _receive_phase(rx, spec, KIND_END_READ, state, barrier=barrier)
        out["paced"] = _receive_phase(rx, spec, KIND_END2, state, paced=True)
        barrier.wait(BARRIER_TIMEOUT)  # 4
        out["extra"] = rx.extra()
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        barrier.abort()
    finally:
        out["state"] = state
        if rx is not None:
            try:
                rx.close()
            except Exception as exc:
                out.setdefault("error", f"close: {type(exc).__name__}: {exc}")
        results.put(out)


# --------------------------------------------------------------------------- orchestration
def _cleanup_shm(spec: dict[str, Any]) -> list[str]:
    """Remove whatever a killed child may have left in the shm directory; returns what was removed."""
    removed = []
    for d in {fb.shm_dir(), Path("/dev/shm")}:
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            name = entry.name
            if name.startswith(f"camfleet.{spec['key']}.") or name.startswith(spec["shm_prefix"]):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(str(entry))
    return removed


def _stop(procs: list[Any]) -> None:
    deadline = time.monotonic() + 5.0
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=3)


def run_one(
    ctx: Any, variant: str, res: str, n_subs: int, run_idx: int, args: argparse.Namespace
) -> dict[str, Any]:
    width, height = RESOLUTIONS[res]
    slots = max(8, n_subs + 4)  # camfleet reserves max_held=1 slot per subscriber + 1 for the publisher
    tag = f"{os.getpid()}-{run_idx}"
    spec: dict[str, Any] = {
        "variant": variant,
        "res": res,
        "width": width,
        "height": height,
        "n_subs": n_subs,
        "slots": slots,
        "hwm": slots - 2,
        "key": f"bench-{tag}",
        "shm_prefix": f"cfbench-{tag}-",
        "endpoint": f"ipc://@camfleet-bench-{tag}",
        "duration": args.duration,
        "lat_duration": args.lat_duration,
        "lat_fps": args.lat_fps,
        "warmup": 2 * slots,
        "burst": slots - 3,  # + its marker, stays below every variant's buffering (slots - 2)
        "burst_rounds_max": 12 if args.quick else 30,
        "burst_seconds": 0.5 if args.quick else 1.5,
        "policy": args.policy,
    }
    barrier = ctx.Barrier(n_subs + 1)
    results = ctx.Queue()
    data_queues = (
        [ctx.Queue(maxsize=slots - 2) for _ in range(n_subs)] if variant in ("queue", "frigate") else []
    )
    procs: list[Any] = []
    got: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        pub = ctx.Process(target=_publisher_main, args=(spec, barrier, results, data_queues), daemon=True)
        procs.append(pub)
        pub.start()
        for i in range(n_subs):
            q = data_queues[i] if data_queues else None
            p = ctx.Process(target=_subscriber_main, args=(spec, i, barrier, results, q), daemon=True)
            procs.append(p)
            p.start()
        deadline = time.monotonic() + 4 * BARRIER_TIMEOUT + args.duration + 3 * args.lat_duration + 30
        while len(got) < len(procs) and time.monotonic() < deadline:
            try:
                got.append(results.get(timeout=0.5))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    barrier.abort()  # a child died without reporting: let the others give up now
                if all(p.exitcode is not None for p in procs):
                    with contextlib.suppress(queue.Empty):
                        got.append(results.get(timeout=1.0))
                        continue
                    break
    finally:
        _stop(procs)
        for q in [*data_queues, results]:
            q.close()
            q.cancel_join_thread()
        leftovers = _cleanup_shm(spec)
    return _summarise(spec, got, procs, leftovers, time.perf_counter() - t_start)


def _summarise(
    spec: dict[str, Any], got: list[dict[str, Any]], procs: list[Any], leftovers: list[str], elapsed: float
) -> dict[str, Any]:
    pub = next((r for r in got if r["role"] == "pub"), None)
    subs = sorted((r for r in got if r["role"] == "sub"), key=lambda r: r["idx"])
    errors = [f"{r['role']}{r.get('idx', '')}: {r['error']}" for r in got if "error" in r]
    if len(got) < len(procs):
        errors.append(
            f"only {len(got)}/{len(procs)} processes reported; exit codes {[p.exitcode for p in procs]}"
        )
    if leftovers:
        errors.append(f"removed leftovers: {leftovers}")
    ok_subs = [s for s in subs if "paced" in s]
    tput = pub.get("throughput") if pub else None
    paced = pub.get("paced") if pub else None
    lat = [x for s in ok_subs for x in s["paced"]["latency_us"]]
    # latency counted from the moment publish() returned instead of from just before it was called
    after: list[float] = []
    if paced:
        each, first = paced["publish_each_us"], paced["first_seq"]
        for s in ok_subs:
            for x, seq in zip(s["paced"]["latency_us"], s["paced"]["latency_seq"], strict=True):
                if 0 <= seq - first < len(each):
                    after.append(x - each[seq - first])
    summary: dict[str, Any] = {
        "fps_per_sub": _mean([s["throughput"]["fps"] for s in ok_subs]),
        "fps_per_sub_min": min((s["throughput"]["fps"] for s in ok_subs), default=None),
        "pub_fps": tput["fps"] if tput else None,
        "publish_us": paced["publish_us"]["p50"] if paced else None,
        "publish_p99_us": paced["publish_us"]["p99"] if paced else None,
        "publish_cpu_us": paced["publish_cpu_us"]["p50"] if paced else None,
        "publish_tput_unblocked_us": tput["publish_unblocked_us"]["p50"] if tput else None,
        "publish_tput_unblocked_cpu_us": tput["publish_unblocked_cpu_us"]["p50"] if tput else None,
        "pub_cpu_us_per_frame": tput["cpu_us_per_frame"] if tput else None,
        "read_us": _mean([s["read_phase"]["read_us"]["p50"] for s in ok_subs]),
        "read_cpu_us": _mean([s["read_phase"]["read_cpu_us"]["p50"] for s in ok_subs]),
        "read_p99_us": _max([s["read_phase"]["read_us"]["p99"] for s in ok_subs]),
        "read_samples": sum(s["read_phase"]["read_us"]["n"] for s in ok_subs),
        "read_blocked": sum(s["read_phase"]["blocked_receives"] for s in ok_subs),
        "read_tput_us": _mean([s["throughput"]["read_us"]["p50"] for s in ok_subs]),
        "read_tput_samples": sum(s["throughput"]["read_us"]["n"] for s in ok_subs),
        "consume_us": _mean([s["throughput"]["consume_us"]["p50"] for s in ok_subs]),
        "lat_p50_ms": _ms(_pct(lat, 50)),
        "lat_p99_ms": _ms(_pct(lat, 99)),
        "lat_max_ms": _ms(max(lat) if lat else None),
        "lat_after_publish_p50_ms": _ms(_pct(after, 50)),
        "lat_after_publish_p99_ms": _ms(_pct(after, 99)),
        "lat_samples": len(lat),
        "lat_fps": paced["fps"] if paced else None,
        "pub_cpu_pct": tput["cpu_pct"] if tput else None,
        "sub_cpu_pct": _mean([s["throughput"]["cpu_pct"] for s in ok_subs]),
        "pub_cpu_pct_paced": paced["cpu_pct"] if paced else None,
        "sub_cpu_pct_paced": _mean([s["paced"]["cpu_pct"] for s in ok_subs]),
        "drops": sum(s["state"]["gaps"] for s in subs),
        "torn": sum(s["state"]["torn"] for s in subs),
        "disorder": sum(s["state"]["disorder"] for s in subs),
        "errors": len(errors),
    }
    if summary["torn"] or summary["disorder"]:
        errors.append(f"{summary['torn']} torn and {summary['disorder']} out-of-order frames")
    return {
        "variant": spec["variant"],
        "res": spec["res"],
        "n_subs": spec["n_subs"],
        "spec": spec,
        "elapsed_s": elapsed,
        "summary": summary,
        "errors": errors,
        "publisher": pub,
        "subscribers": subs,
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _max(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1e3


def bench_memcpy(res: str, seconds: float, slots: int, pace_fps: float) -> list[dict[str, Any]]:
    """Baseline (a): the copy a publish cannot avoid, hot (tight loop), into a ring, and paced."""
    width, height = RESOLUTIONS[res]
    shape = (height * 3 // 2, width)
    src = _make_source(shape)
    out = []
    for name, n_dst, paced in (
        ("memcpy", 1, False),
        ("memcpy-ring", slots, False),
        ("memcpy-paced", 1, True),
    ):
        dsts = [np.zeros(shape, np.uint8) for _ in range(n_dst)]
        for d in dsts:
            np.copyto(d, src)  # fault in
        proc = psutil.Process()
        samples: list[int] = []
        cpu_samples: list[int] = []
        cpu0, w0 = _cpu_s(proc), time.perf_counter()
        deadline = w0 + seconds
        next_t = w0
        i = 0
        while time.perf_counter() < deadline:
            if paced:  # the same pacing as the publishers' latency phase
                next_t += 1.0 / pace_fps
                delay = next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            d = dsts[i % n_dst]
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            np.copyto(d, src)
            samples.append(time.perf_counter_ns() - t0)
            cpu_samples.append(time.thread_time_ns() - c0)
            i += 1
        wall, cpu = time.perf_counter() - w0, _cpu_s(proc) - cpu0
        s = _summary_us(samples)
        out.append(
            {
                "variant": name,
                "res": res,
                "n_subs": 0,
                "copy_us": s,
                "copy_cpu_us": _summary_us(cpu_samples),
                "summary": {
                    "publish_us": s["p50"],
                    "publish_cpu_us": _summary_us(cpu_samples)["p50"],
                    "publish_p99_us": s["p99"],
                    "fps_per_sub": 1e6 / s["p50"] if s["p50"] and not paced else None,
                    "lat_fps": pace_fps if paced else None,
                    "pub_cpu_pct": 100 * cpu / wall,
                    "pub_cpu_us_per_frame": 1e6 * cpu / max(i, 1),
                    "gb_per_s": shape[0] * shape[1] / (s["p50"] * 1e3) if s["p50"] else None,
                },
            }
        )
    return out


# --------------------------------------------------------------------------- report
COLUMNS = [
    ("variant", 16, "s", None),
    ("res", 5, "s", None),
    ("subs", 4, "s", None),
    ("fps/sub", 7, ".0f", "fps_per_sub"),
    ("pub µs", 6, ".0f", "publish_us"),
    ("pubCPU/f", 8, ".0f", "pub_cpu_us_per_frame"),
    ("read µs", 7, ".1f", "read_us"),
    ("rdCPU µs", 8, ".1f", "read_cpu_us"),
    ("p50 ms", 6, ".2f", "lat_p50_ms"),
    ("p99 ms", 6, ".2f", "lat_p99_ms"),
    ("lat fps", 7, ".0f", "lat_fps"),
    ("pubCPU%", 7, ".0f", "pub_cpu_pct"),
    ("subCPU%", 7, ".0f", "sub_cpu_pct"),
    ("drops", 5, "d", "drops"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = " ".join(_cell(c[0], c[1], "s") if i < 3 else c[0].rjust(c[1]) for i, c in enumerate(COLUMNS))
    lines = [header, "-" * len(header)]
    last_group = None
    for r in rows:
        group = (r["res"], r["n_subs"])
        if last_group is not None and group != last_group:
            lines.append("")
        last_group = group
        s = r["summary"]
        label = LABELS[r["variant"]] + ("!" if r.get("errors") else "")
        cells = [
            _cell(label, COLUMNS[0][1], "s"),
            _cell(r["res"], COLUMNS[1][1], "s"),
            _cell(str(r["n_subs"]) if r["n_subs"] else "-", COLUMNS[2][1], "s"),
        ]
        cells += [_cell(s.get(key), width, fmt) for _name, width, fmt, key in COLUMNS[3:]]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _row(
    rows: list[dict[str, Any]], variant: str, res: str, n_subs: int | None = None
) -> dict[str, Any] | None:
    for r in rows:
        if r["variant"] == variant and r["res"] == res and (n_subs is None or r["n_subs"] == n_subs):
            return r
    return None


def _us_of(rows: list[dict[str, Any]], variant: str, res: str, key: str = "publish_us") -> float | None:
    r = _row(rows, variant, res)
    return r["summary"].get(key) if r else None


def _per_n(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["n_subs"], r["summary"][key]) for r in rows if r["summary"].get(key) is not None]


def evaluate_targets(
    rows: list[dict[str, Any]], resolutions: list[str], floors: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Compare camfleet's rows with the issue's targets; PASS/MISS are measurements, not assertions."""
    targets: list[dict[str, Any]] = []
    floors = floors or []

    def add(name: str, res: str, ok: bool | None, detail: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        targets.append({"target": name, "res": res, "status": status, "detail": detail})

    for res in resolutions:
        cams = [r for r in rows if r["variant"] == "camfleet" and r["res"] == res and not r["errors"]]
        name = "camfleet publish <= 2x memcpy floor"
        hot = _us_of(rows, "memcpy", res, "publish_cpu_us")
        paced = _us_of(rows, "memcpy-paced", res, "publish_cpu_us")
        paced_wall_floor = _us_of(rows, "memcpy-paced", res)
        hot_pub = _per_n(cams, "publish_tput_unblocked_cpu_us")
        hot_wall = _per_n(cams, "publish_tput_unblocked_us")
        paced_pub = _per_n(cams, "publish_cpu_us")
        paced_wall = _per_n(cams, "publish_us")
        if hot and paced and paced_wall_floor and hot_pub and paced_pub and paced_wall:
            worst_hot = max(v for _n, v in hot_pub)
            worst_paced = max(v for _n, v in paced_pub)
            worst_wall = max(v for _n, v in paced_wall)
            detail = (
                f"thread CPU time, p50: back-to-back (throughput phase, calls that did not block) "
                f"{_fmt_per_n(hot_pub, '.0f')} µs vs memcpy {hot:.0f} µs -> worst {worst_hot / hot:.2f}x; "
                f"paced {_fmt_per_n(paced_pub, '.0f')} µs vs paced memcpy {paced:.0f} µs -> worst "
                f"{worst_paced / paced:.2f}x. Wall time, p50: back-to-back {_fmt_per_n(hot_wall, '.0f')} µs; "
                f"paced {_fmt_per_n(paced_wall, '.0f')} µs vs {paced_wall_floor:.0f} µs -> worst "
                f"{worst_wall / paced_wall_floor:.2f}x"
            )
            ok = worst_hot <= 2 * hot and worst_paced <= 2 * paced
            wakes = _floor_medians(floors, res, "wake_call_p50_us")
            if wakes:
                detail += (
                    f". A publish also wakes the sleeping subscribers: the bare futex wake costs "
                    f"{_fmt_per_n(wakes, '.0f')} µs here (wake-up floor), so memcpy + wake = "
                    f"{_fmt_per_n([(n, hot + w) for n, w in wakes], '.0f')} µs"
                )
                if not ok and any(hot + w > 2 * hot for _n, w in wakes):
                    detail += " -> over 2x memcpy before any framebus work: a limit of this machine"
            add(name, res, ok, detail)
        else:
            add(name, res, None, "not measured")

        name = "camfleet per-subscriber read overhead <= 20 µs"
        reads = [(r["n_subs"], r["summary"]["read_us"]) for r in cams if r["summary"]["read_us"] is not None]
        cpu = [(r["n_subs"], r["summary"]["read_cpu_us"]) for r in cams if r["summary"]["read_cpu_us"]]
        if reads:
            worst = max(v for _n, v in reads)
            detail = (
                f"next(timeout=0)+release() p50 wall {_fmt_per_n(reads, '.1f')} µs, worst {worst:.1f} µs "
                f"(thread CPU time {_fmt_per_n(cpu, '.1f')} µs)"
            )
            add(name, res, worst <= 20, detail)
        else:
            add(name, res, None, "not measured")

        name = "camfleet p99 latency <= 1 ms, counted from publish() returning"
        after = []
        for r in cams:
            reps = [x for x in r.get("reps_lat_after_p99_ms") or [r["summary"]["lat_after_publish_p99_ms"]]
                    if x is not None]
            if reps:
                after.append((r["n_subs"], float(np.median(reps))))
        if after:
            worst = max(v for _n, v in after)
            runs = "median over the runs" if any(len(r.get("reps_fps", [])) > 1 for r in cams) else "one run"
            detail = f"p99 {_fmt_per_n(after, '.3f')} ms ({runs}), worst {worst:.3f} ms"
            ok = worst <= 1.0
            floor_after = _floor_medians(floors, res, "lat_after_p99_ms")
            if floor_after:
                floor_worst = max(v for _n, v in floor_after)
                detail += (
                    f"; wake-up floor (bare futex wake of sleeping processes, same pacing, measured "
                    f"before each run): p99 {_fmt_per_n(floor_after, '.3f')} ms"
                )
                if not ok and floor_worst > 1.0:
                    detail += (
                        " -> the floor itself misses 1 ms: on this machine, at this load, no scheme that "
                        "wakes a sleeping process meets the target"
                    )
            add(name, res, ok, detail)
        else:
            add(name, res, None, "not measured")

        for n_subs, factor in ((1, 1.0), (4, 1.5)):
            name = f"{n_subs} sub{'s' if n_subs > 1 else ''}: camfleet fps/sub >= {factor:g}x (c) shm+Queue"
            mine, other = _row(rows, "camfleet", res, n_subs), _row(rows, "frigate", res, n_subs)
            a = mine["summary"]["fps_per_sub"] if mine and not mine["errors"] else None
            b = other["summary"]["fps_per_sub"] if other and not other["errors"] else None
            if a is None or b is None or b <= 0:
                add(name, res, None, "not measured (or the run had errors)")
                continue
            assert mine is not None and other is not None
            ratio, detail = a / b, f"camfleet {a:.0f} vs {b:.0f} fps/sub = {a / b:.2f}x"
            pairs = list(zip(mine.get("reps_fps", []), other.get("reps_fps", []), strict=False))
            ratios = [x / y for x, y in pairs if x and y]
            if len(ratios) > 1:
                # each camfleet run is paired with the baseline run right after it: load that
                # drifts between runs (a shared machine) cancels out of the ratio of a pair
                ratio = float(np.median(ratios))
                detail = (
                    f"median of {len(ratios)} paired runs {ratio:.2f}x (pairs "
                    f"{', '.join(f'{x:.0f}/{y:.0f}' for x, y in pairs)} fps/sub; median rows "
                    f"{a:.0f} vs {b:.0f})"
                )
            cpu_a, cpu_b = _cpu_per_frame(mine), _cpu_per_frame(other)
            if cpu_a and cpu_b:
                detail += (
                    f"; CPU per frame, publisher + subscribers: {cpu_a:.0f} vs {cpu_b:.0f} µs "
                    f"= {cpu_b / cpu_a:.2f}x less"
                )
            add(name, res, ratio >= factor, detail)

        cam4 = _row(rows, "camfleet", res, 4)
        for base, factor in (("queue", 10), ("zmq", 2)):
            name = f"4 subs: camfleet fps/sub >= {factor}x {LABELS[base]}"
            other = _row(rows, base, res, 4)
            a = cam4["summary"]["fps_per_sub"] if cam4 and not cam4["errors"] else None
            b = other["summary"]["fps_per_sub"] if other and not other["errors"] else None
            if a is None or b is None or b <= 0:
                add(name, res, None, "not measured (or the run had errors)")
                continue
            add(name, res, a >= factor * b, f"camfleet {a:.0f} vs {b:.0f} fps/sub = {a / b:.2f}x")
    return targets


def _floor_medians(floors: list[dict[str, Any]], res: str, key: str) -> list[tuple[int, float]]:
    """(subscribers, median of ``key`` over the repetitions) of the wake-up floor at ``res``."""
    by_n: dict[int, list[float]] = {}
    for f in floors:
        if f["res"] == res and f[key] is not None:
            by_n.setdefault(f["n_subs"], []).append(f[key])
    return [(n, float(np.median(v))) for n, v in sorted(by_n.items())]


def _cpu_per_frame(row: dict[str, Any]) -> float | None:
    """CPU µs all processes of a run spent per frame delivered to each subscriber (throughput phase)."""
    s = row["summary"]
    if not s.get("pub_cpu_us_per_frame") or not s.get("sub_cpu_pct") or not s.get("fps_per_sub"):
        return None
    per_sub = s["sub_cpu_pct"] / 100 * 1e6 / s["fps_per_sub"]
    return float(s["pub_cpu_us_per_frame"] + row["n_subs"] * per_sub)


def _fmt_per_n(pairs: list[tuple[int, float]], fmt: str) -> str:
    return "[" + ", ".join(f"{n} sub{'s' if n > 1 else ''}: {format(v, fmt)}" for n, v in pairs) + "]"


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1080p, 1 and 4 subscribers, short phases (~1 min)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-framebus.json"), help="raw results")
    ap.add_argument("--res", nargs="+", choices=sorted(RESOLUTIONS), help="resolutions (default by mode)")
    ap.add_argument("--subs", nargs="+", type=int, help="subscriber counts (default by mode)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--duration", type=float, help="seconds of the throughput phase per run")
    ap.add_argument("--lat-duration", type=float, help="seconds of the paced latency phase per run")
    ap.add_argument("--lat-fps", type=float, default=60.0, help="pace of the latency phase (max)")
    ap.add_argument(
        "--policy",
        choices=["wait", "drop_oldest"],
        default="wait",
        help="camfleet publisher policy (wait: lossless, like the baselines)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of every (variant, subscribers) case, interleaved; the table keeps the median by "
        "fps/sub (use 3 or more on a shared machine)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the wake-up floor measurement")
    args = ap.parse_args(argv)
    quick = args.quick
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    args.res = args.res or (["1080p"] if quick else ["1080p", "4K"])
    args.subs = args.subs or ([1, 4] if quick else [1, 4, 8])
    args.duration = args.duration or (1.5 if quick else 3.0)
    # at 60 fps, 120 (quick) or 180 samples per subscriber: a p99 that is not just the maximum
    args.lat_duration = args.lat_duration or (2.0 if quick else 3.0)
    if any(n < 1 or n > 60 for n in args.subs):
        ap.error("--subs must be 1..60")

    ctx = mp.get_context("spawn")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    run_idx = 0
    print(
        f"framebus bench: {', '.join(args.res)} yuv420p packed; subscribers {args.subs}; "
        f"{args.duration:g} s throughput + {args.lat_duration:g} s paced per run; "
        f"{os.cpu_count()} CPUs; camfleet policy={args.policy}, mode=sequential",
        flush=True,
    )
    if load_start[0] > 0.5:
        print(
            f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs", flush=True
        )
    floors: list[dict[str, Any]] = []
    all_runs: list[dict[str, Any]] = []
    for res in args.res:
        rows += bench_memcpy(res, 0.5 if quick else 1.5, max(8, max(args.subs) + 4), args.lat_fps)
        for n_subs in args.subs:
            for rep, variant in itertools.product(range(args.repeat), args.variants):
                if variant == args.variants[0] and not args.no_floor:
                    # measured in every repetition, next to the runs it is the limit of
                    floor = _wakefloor.measure(ctx, n_subs, args.lat_fps, args.lat_duration)
                    floor["res"] = res
                    floors.append(floor)
                    print(
                        f"  wake-up floor   {res:<5} {n_subs} sub: p50 {floor['lat_after_p50_ms']:.3f} ms, "
                        f"p99 {floor['lat_after_p99_ms']:.3f} ms after the wake call "
                        f"(the call: p50 {floor['wake_call_p50_us']:.0f} µs)",
                        file=sys.stderr,
                        flush=True,
                    )
                run_idx += 1
                r = run_one(ctx, variant, res, n_subs, run_idx, args)
                r["rep"] = rep
                all_runs.append(r)
                s = r["summary"]
                fps = s["fps_per_sub"]
                print(
                    f"  {LABELS[variant]:<15} {res:<5} {n_subs} sub: "
                    f"{'-' if fps is None else f'{fps:.0f}'} fps/sub, {r['elapsed_s']:.1f} s"
                    + (
                        f"  {len(r['errors'])} error(s), first: {r['errors'][0].splitlines()[0]}"
                        if r["errors"]
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            rows += _medians(all_runs, res, n_subs)
    elapsed = time.perf_counter() - t0
    targets = evaluate_targets(rows, args.res, floors)

    print()
    print(format_table(rows))
    if floors:
        print()
        print("wake-up floor (bench/_wakefloor.py: one process futex-wakes N sleeping ones, nothing else):")
        for f in floors:
            print(
                f"  {f['res']:<5} {f['n_subs']} sub: after the wake call p50 {f['lat_after_p50_ms']:.3f} ms, "
                f"p99 {f['lat_after_p99_ms']:.3f} ms; the wake call itself "
                f"p50 {f['wake_call_p50_us']:.0f} µs, "
                f"p99 {f['wake_call_p99_us']:.0f} µs ({f['samples']} samples at {f['fps']:g} fps)"
            )
    print()
    for t in targets:
        print(f"[{t['status']}] {t['target']} ({t['res']}): {t['detail']}")
    print()
    load_end = os.getloadavg()
    print(
        f"total {elapsed:.1f} s; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end "
        "(the bench itself adds up to ~2). Columns:"
    )
    for key, text in METHOD.items():
        print(f"  {key}: {text}")
    errors = [e for r in rows for e in r.get("errors", [])]
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            print("  " + e.splitlines()[0])

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "argv": sys.argv,
            "quick": quick,
            "elapsed_s": elapsed,
            "python": sys.version,
            "numpy": np.__version__,
            "pyzmq": _zmq_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "framebus_src_sha256": _src_digest(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": METHOD,
        },
        "rows": rows,
        "runs": [r for r in all_runs if r not in rows],
        "wake_floor": floors,
        "targets": targets,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    return 0


def _medians(runs: list[dict[str, Any]], res: str, n_subs: int) -> list[dict[str, Any]]:
    """For each variant, the run of (``res``, ``n_subs``) with the median fps/sub (the lower one of two).

    The chosen row carries every run's fps/sub in ``reps_fps``, in run order.
    """
    out = []
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant and r["res"] == res and r["n_subs"] == n_subs]
        if not mine:
            continue
        ok = [r for r in mine if not r["errors"] and r["summary"]["fps_per_sub"] is not None]
        pool = sorted(ok, key=lambda r: r["summary"]["fps_per_sub"]) or mine
        chosen = pool[(len(pool) - 1) // 2]
        chosen["reps_fps"] = [r["summary"]["fps_per_sub"] for r in mine]
        chosen["reps_lat_after_p99_ms"] = [r["summary"]["lat_after_publish_p99_ms"] for r in mine]
        out.append(chosen)
    return out


def _zmq_version() -> str | None:
    try:
        import zmq
    except ImportError:
        return None
    return f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}"


def _src_digest() -> str:
    """Digest of the framebus sources measured, to tell runs of different code apart."""
    h = hashlib.sha256()
    for path in sorted(Path(fb.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    sys.exit(main())
