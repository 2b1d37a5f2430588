"""``camfleet demo``: the framebus alone, with synthetic test-pattern cameras.

Each synthetic camera is a process publishing a moving test pattern to its
frame ring; each has a consumer process reading every frame in order and
checking it. The main process prints a live table of the rings.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from multiprocessing.synchronize import Event as EventType

import numpy as np
import typer

from camfleet import framebus
from camfleet.framebus.inspect import ring_info


def _camera(key: str, width: int, height: int, fps: float, stop: EventType) -> None:
    """Publish a moving gradient whose first row carries the frame number."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fmt = framebus.FrameFormat.packed_format(width, height, "yuv420p")
    ramp = (np.arange(width, dtype=np.uint16)[None, :] + np.arange(height)[:, None]).astype(np.uint8)
    period = 1.0 / fps
    with framebus.FramePublisher(key, fmt, slots=8, policy="drop_oldest") as pub:
        n = 0
        next_t = time.monotonic()
        while not stop.is_set():
            frame = pub.begin()
            frame.planes[0][:] = ramp + np.uint8(n % 256)
            frame.planes[0][0, :8] = np.frombuffer(n.to_bytes(8, "little"), np.uint8)
            frame.planes[1][:] = 128
            frame.planes[2][:] = 128
            pub.commit(pts=n * 90000 // int(fps), capture_ns=time.time_ns())
            n += 1
            next_t += period
            stop.wait(max(next_t - time.monotonic(), 0))


def _consumer(key: str, stop: EventType) -> None:
    """Read every frame in order and check the embedded frame number."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while not stop.is_set():
        try:
            with framebus.subscribe(key, mode="sequential", name="demo-consumer", connect_timeout=5) as sub:
                while not stop.is_set():
                    try:
                        with sub.next(timeout=0.5) as frame:
                            n = int.from_bytes(frame.planes[0][0, :8].tobytes(), "little")
                            if n + 1 != frame.seq:
                                print(f"{key}: frame {frame.seq} carries number {n}", flush=True)
                    except (framebus.FrameTimeout, framebus.Overrun):
                        continue
        except (framebus.PublisherGone, framebus.NotFound):
            continue


def run(
    cameras: int = typer.Option(2, min=1, max=32, help="Number of synthetic cameras."),
    width: int = typer.Option(640, help="Frame width in pixels."),
    height: int = typer.Option(360, help="Frame height in pixels."),
    fps: float = typer.Option(15.0, min=1, max=240, help="Frames per second per camera."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
) -> None:
    """Run synthetic cameras through the framebus and show their rings live."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    keys = [f"demo-cam{i + 1}" for i in range(cameras)]
    procs = [ctx.Process(target=_camera, args=(k, width, height, fps, stop), name=k) for k in keys]
    procs += [ctx.Process(target=_consumer, args=(k, stop), name=f"{k}-consumer") for k in keys]
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for p in procs:
        p.start()
    typer.echo(
        f"camfleet: {cameras} synthetic camera(s) at {width}x{height} {fps:g} fps on the framebus.\n"
        "  In another terminal: camfleet bus list | camfleet bus stat demo-cam1 | "
        "camfleet bus tail demo-cam1\n  Ctrl-C to stop."
    )
    end = time.monotonic() + duration if duration > 0 else None
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(2.0)
            lines = []
            for k in keys:
                r = ring_info(k)
                if r.error:
                    lines.append(f"  {k:<12} starting...")
                    continue
                sub = r.subscribers[0] if r.subscribers else None
                got = f"delivered {sub.delivered:>7}  gaps {sub.gaps}" if sub else "no consumer yet"
                lines.append(f"  {k:<12} {r.description:<18} {r.fps:5.1f} fps  seq {r.last_seq:>7}  {got}")
            typer.echo("\n".join(lines))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
            if p.is_alive():
                p.kill()
        typer.echo("camfleet: stopped.")
