"""Child-process bodies for the multi-process framebus tests (spawn-importable)."""

from __future__ import annotations

import os
import signal
import time
import zlib
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType

import numpy as np

from camfleet import framebus as fb

W, H = 128, 64


def stamp(frame: np.ndarray, seq: int) -> None:
    """Fill ``frame`` (HxW uint8) with a pattern that depends on ``seq``, plus checks.

    Bytes 0-7: seq; the body: a seq-dependent pattern; the last 8 bytes: seq
    again (4) and the crc32 of the body (4). A torn frame fails one of these.
    """
    flat = frame.reshape(-1)
    flat[8:-8] = (np.arange(flat.size - 16, dtype=np.uint32) * 31 + seq * 7).astype(np.uint8)
    crc = zlib.crc32(flat[8:-8].tobytes())
    flat[:8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)
    flat[-8:-4] = np.frombuffer((seq & 0xFFFFFFFF).to_bytes(4, "little"), np.uint8)
    flat[-4:] = np.frombuffer(crc.to_bytes(4, "little"), np.uint8)


def verify(frame: np.ndarray, seq: int) -> bool:
    """True when ``frame`` is exactly what :func:`stamp` wrote for ``seq``."""
    flat = frame.reshape(-1)
    head = int.from_bytes(flat[:8].tobytes(), "little")
    tail = int.from_bytes(flat[-8:-4].tobytes(), "little")
    crc = int.from_bytes(flat[-4:].tobytes(), "little")
    return head == seq and tail == seq & 0xFFFFFFFF and zlib.crc32(flat[8:-8].tobytes()) == crc


def publisher(key: str, n: int, policy: str, slots: int, ready: EventType, go: EventType) -> None:
    """Publish ``n`` stamped frames as fast as the policy allows."""
    fmt = fb.FrameFormat.packed_format(W, H, "gray")
    with fb.FramePublisher(key, fmt, slots=slots, policy=policy, ack_timeout=5.0) as pub:  # type: ignore[arg-type]
        ready.set()
        go.wait(30)
        for i in range(1, n + 1):
            frame = pub.begin()
            stamp(frame.array, i)
            pub.commit(pts=i)


def subscriber(key: str, name: str, mode: str, n: int, out: Connection, ready: EventType) -> None:
    """Read until frame ``n`` (or 60 s); report (delivered, torn, gaps, overruns, order_errors)."""
    torn = order_errors = 0
    last = 0
    with fb.subscribe(key, mode=mode, name=name, connect_timeout=10) as sub:  # type: ignore[arg-type]
        ready.set()
        deadline = time.monotonic() + 60
        while last < n and time.monotonic() < deadline:
            try:
                with sub.next(timeout=5) as frame:
                    if not verify(frame.array, frame.seq):
                        torn += 1
                    if frame.seq <= last or (mode == "sequential" and frame.seq != last + 1):
                        order_errors += 1
                    last = frame.seq
            except fb.Overrun:
                continue
            except (fb.FrameTimeout, fb.PublisherGone):
                break
        st = sub.stats()
    out.send({"delivered": st.delivered, "torn": torn, "gaps": st.gaps, "overruns": st.overruns,
              "order_errors": order_errors, "last": last, "skipped": st.skipped})


def hold_lease(key: str, name: str, held: EventType) -> None:
    """Take one frame, keep it forever (until killed)."""
    sub = fb.subscribe(key, mode="latest", name=name, connect_timeout=10)
    frame = sub.next(timeout=10)
    assert frame.seq > 0
    held.set()
    signal.pause()


def follow(key: str, name: str, out: Connection, connect_timeout: float) -> None:
    """Subscribe, report each frame seq; on PublisherGone report it with the time and reconnect."""
    while True:
        try:
            with fb.subscribe(key, mode="latest", name=name, connect_timeout=connect_timeout) as sub:
                out.send(("subscribed", os.getpid(), time.monotonic()))
                while True:
                    try:
                        with sub.next(timeout=10) as frame:
                            out.send(("frame", frame.seq, time.monotonic()))
                    except fb.FrameTimeout:
                        out.send(("timeout", 0, time.monotonic()))
                        return
        except fb.PublisherGone:
            out.send(("gone", 0, time.monotonic()))
        except fb.NotFound:
            out.send(("notfound", 0, time.monotonic()))
            return


def publish_forever(key: str, ready: EventType) -> None:
    """Publish a small frame every 10 ms until killed."""
    fmt = fb.FrameFormat.packed_format(W, H, "gray")
    pub = fb.FramePublisher(key, fmt, slots=4)
    ready.set()
    i = 0
    while True:
        i += 1
        frame = pub.begin()
        stamp(frame.array, i)
        pub.commit(pts=i)
        time.sleep(0.01)


def packet_payload(seq: int, size: int) -> bytes:
    """Deterministic payload for packet ``seq``: seq, size, a pattern, crc32 at the end."""
    body = (np.arange(size, dtype=np.uint32) * 13 + seq).astype(np.uint8).tobytes()
    head = seq.to_bytes(8, "little") + size.to_bytes(4, "little")
    data = head + body
    return data + zlib.crc32(data).to_bytes(4, "little")


def packet_ok(seq: int, data: bytes) -> bool:
    """True when ``data`` is intact and belongs to packet ``seq``."""
    if len(data) < 16:
        return False
    return (
        int.from_bytes(data[:8], "little") == seq
        and zlib.crc32(data[:-4]) == int.from_bytes(data[-4:], "little")
    )


def packet_publisher(key: str, n: int, ready: EventType, go: EventType) -> None:
    """Publish ``n`` packets of varied sizes into a small buffer, a keyframe every 25."""
    rng = np.random.default_rng(7)
    with fb.PacketPublisher(key, "h264", capacity=256 * 1024, index_size=256) as pub:
        ready.set()
        go.wait(30)
        for seq in range(1, n + 1):
            size = int(rng.integers(16, 20_000))
            pub.publish(packet_payload(seq, size), pts=seq * 3000, dts=seq * 3000, key=seq % 25 == 1)


def packet_reader(key: str, n: int, out: Connection, ready: EventType) -> None:
    """Read until packet ``n``; report counts of intact / corrupt / discontinuities."""
    bad = discont = delivered = 0
    last = 0
    with fb.subscribe_packets(key, name="reader", connect_timeout=10) as sub:
        ready.set()
        while last < n:
            try:
                p = sub.next(timeout=5)
            except (fb.FrameTimeout, fb.PublisherGone):
                break
            delivered += 1
            bad += not packet_ok(p.seq, p.data)
            discont += bool(p.flags & fb.PacketFlags.DISCONTINUITY)
            if p.seq <= last:
                bad += 1
            last = p.seq
            if delivered % 50 == 0:
                time.sleep(0.002)  # a slow consumer, so overruns happen
        st = sub.stats()
    out.send({"bad": bad, "discont": discont, "delivered": delivered, "last": last, **st})
