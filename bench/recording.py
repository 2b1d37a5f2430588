"""Benchmark: recorder CPU per camera (remux to MP4 segments) next to decoding the same stream.

Run from the repository root::

    .venv/bin/python bench/recording.py --quick          # 1 camera, 15 s measured (< 60 s)
    .venv/bin/python bench/recording.py                  # 1 and 4 cameras, 30 s measured
    .venv/bin/python bench/recording.py --json out.json  # raw results (default: artifacts/)

See ``METHOD`` below (also printed and stored in the JSON).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil

from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from _benchutil import cpu_s as _cpu_s

WIDTH, HEIGHT, FPS, GOP = 1920, 1080, 25, 50
BITRATE_KBPS = 4000
SEGMENT_S = 4.0

METHOD = {
    "source": (
        f"a {WIDTH}x{HEIGHT} {FPS} fps H.264 clip (the simulator's scene: real photographs moving over a "
        f"background), encoded once with PyAV libx264 (superfast: CABAC and deblocking like a camera's "
        f"main/high profile; zerolatency, {BITRATE_KBPS} kbit/s, "
        f"keyframe every {GOP} frames), published in real time to one packet ring per camera by a "
        "publisher process (looping, timestamps continuing)"
    ),
    "recorder": (
        f"one process per camera running camfleet.recording.Recorder (segment_seconds={SEGMENT_S:g}): "
        "remux to fragmented MP4 with PyAV, fsync + rename per segment, a message per segment"
    ),
    "decode": (
        "one process per camera subscribed to the same ring, decoding every packet with PyAV "
        "(FFmpeg h264, thread_type AUTO, as the ingest does) - the cost a recorder that decodes would pay"
    ),
    "cpu": (
        "user+system CPU seconds of each process (all threads) over the measured window, after a warm-up; "
        "'% core' = CPU seconds / wall seconds x 100 (100 = one core busy)"
    ),
}


# ---------------------------------------------------------------------------- the source clip


def encode_clip(seconds: float, path: Path) -> dict[str, Any]:
    """Encode ``seconds`` of the simulator's scene at 1080p25 into ``path`` (packets, extradata)."""
    from camfleet.ingest.scene import Scene

    scene = Scene(width=WIDTH, height=HEIGHT, seed=0)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    enc.time_base, enc.framerate, enc.gop_size = Fraction(1, 90000), Fraction(FPS), GOP
    enc.bit_rate = BITRATE_KBPS * 1000
    # superfast: CABAC and deblocking, like a camera's main/high profile stream
    enc.options = {"preset": "superfast", "tune": "zerolatency", "bf": "0"}
    enc.flags |= av.codec.context.Flags.global_header
    packets: list[tuple[bytes, int, int, bool]] = []
    n = int(seconds * FPS)
    step = 90000 // FPS
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(scene.render_i420(i), format="yuv420p")
        frame.pts, frame.time_base = i * step, enc.time_base
        packets += [(bytes(p), int(p.pts), int(p.dts), bool(p.is_keyframe)) for p in enc.encode(frame)]
    packets += [(bytes(p), int(p.pts), int(p.dts), bool(p.is_keyframe)) for p in enc.encode(None)]
    clip = {"packets": packets, "extradata": bytes(enc.extradata or b""), "frames": n, "step": step}
    path.write_bytes(pickle.dumps(clip))
    return {"frames": n, "bytes": sum(len(p[0]) for p in packets),
            "kbit_s": sum(len(p[0]) for p in packets) * 8 / seconds / 1000}


# ---------------------------------------------------------------------------- processes


def publisher(key: str, clip_path: str, shm: str, ready: Any, go: Any, stop: Any) -> None:
    os.environ["CAMFLEET_SHM_DIR"] = shm
    from camfleet.framebus import PacketPublisher

    clip = pickle.loads(Path(clip_path).read_bytes())
    packets, step = clip["packets"], clip["step"]
    span = clip["frames"] * step
    with PacketPublisher(key, "h264", extradata=clip["extradata"], time_base=(1, 90000),
                         capacity=32 * 2**20, index_size=4096) as pub:
        ready.set()
        go.wait()
        t0 = time.monotonic()
        i = 0
        while not stop.is_set():
            loop, j = divmod(i, len(packets))
            data, pts, dts, key_ = packets[j]
            due = t0 + (loop * span + dts) / 90000
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            off = loop * span
            pub.publish(data, pts=pts + off, dts=dts + off, duration=step, key=key_)
            i += 1


def _stop_thread(stop: Any) -> threading.Event:
    event = threading.Event()

    def relay() -> None:
        stop.wait()
        event.set()

    threading.Thread(target=relay, daemon=True).start()
    return event


class _CountSink:
    def __init__(self) -> None:
        self.segments = 0
        self.bytes = 0

    def put(self, item: dict[str, Any]) -> None:
        self.segments += 1
        self.bytes += int(item["segment"]["size"])


def recorder(key: str, out_dir: str, shm: str, ready: Any, stop: Any, conn: Any) -> None:
    os.environ["CAMFLEET_SHM_DIR"] = shm
    from camfleet.config import RecordSettings
    from camfleet.recording import Recorder

    sink = _CountSink()
    rec = Recorder(key, RecordSettings(segment_seconds=SEGMENT_S), Path(out_dir), sink)
    ready.set()
    rec.run(_stop_thread(stop))
    s = rec.stats
    conn.send({"segments": sink.segments, "bytes": sink.bytes, "packets": s.packets, "gaps": s.gaps,
               "dropped": s.dropped, "errors": s.errors})


def decoder(key: str, shm: str, ready: Any, stop: Any, conn: Any) -> None:
    os.environ["CAMFLEET_SHM_DIR"] = shm
    from camfleet import framebus

    frames = packets = 0
    gaps = 0
    with framebus.subscribe_packets(key, name=f"decode-{key}", connect_timeout=10) as sub:
        ctx = av.CodecContext.create(sub.codec, "r")
        ctx.extradata = sub.extradata
        ctx.thread_type = "AUTO"
        ready.set()
        while not stop.is_set():
            try:
                p = sub.next(timeout=0.25)
            except framebus.FrameTimeout:
                continue
            except framebus.PublisherGone:
                break  # the run is over
            gaps += int(bool(p.flags & framebus.PacketFlags.DISCONTINUITY))
            pkt = av.Packet(p.data)
            pkt.pts, pkt.dts = p.pts, p.dts
            frames += len(ctx.decode(pkt))
            packets += 1
    conn.send({"frames": frames, "packets": packets, "gaps": gaps})


# ---------------------------------------------------------------------------- one run


def run(ctx: Any, n_cams: int, clip_path: Path, warmup: float, duration: float) -> list[dict[str, Any]]:
    """``n_cams`` cameras: publisher + recorder + decoder processes each; CPU over ``duration`` s."""
    shm = Path("/dev/shm") / f"camfleet-bench-rec-{os.getpid()}-{secrets.token_hex(3)}"
    shm.mkdir(mode=0o700)
    out = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    go, stop = ctx.Event(), ctx.Event()
    procs: dict[str, list[Any]] = {"publisher": [], "recorder": [], "decode": []}
    pipes: dict[str, list[Any]] = {"recorder": [], "decode": []}
    try:
        for i in range(n_cams):
            key = f"bench{i}"
            ready = ctx.Event()
            p = ctx.Process(target=publisher, args=(key, str(clip_path), str(shm), ready, go, stop))
            p.start()
            procs["publisher"].append(p)
            if not ready.wait(60):
                raise RuntimeError(f"publisher {key} did not start")
        for i in range(n_cams):
            key = f"bench{i}"
            for role in ("recorder", "decode"):
                ready = ctx.Event()
                recv, send = ctx.Pipe(duplex=False)
                args = ((key, str(out), str(shm), ready, stop, send) if role == "recorder"
                        else (key, str(shm), ready, stop, send))
                p = ctx.Process(target=recorder if role == "recorder" else decoder, args=args)
                p.start()
                procs[role].append(p)
                pipes[role].append(recv)
                if not ready.wait(60):
                    raise RuntimeError(f"{role} {key} did not start")
        go.set()
        time.sleep(warmup)  # steady state: segments being written, decoders past their first GOP
        ps = {role: [psutil.Process(p.pid) for p in ps_] for role, ps_ in procs.items()}
        c0 = {role: [_cpu_s(p) for p in lst] for role, lst in ps.items()}
        t0 = time.perf_counter()
        time.sleep(duration)  # the measured window
        wall = time.perf_counter() - t0
        c1 = {role: [_cpu_s(p) for p in lst] for role, lst in ps.items()}
        stop.set()
        results = {role: [r.recv() if r.poll(30) else {} for r in pipes[role]] for role in pipes}
        rows = []
        for role in ("recorder", "decode"):
            cpu = [b - a for a, b in zip(c0[role], c1[role], strict=True)]
            per_cam = sum(cpu) / n_cams
            extra = results[role]
            rows.append({
                "role": role, "n_cams": n_cams, "wall_s": wall, "video_s": wall,
                "cpu_s_total": sum(cpu), "cpu_s_per_cam": per_cam,
                "core_pct_per_cam": per_cam / wall * 100,
                "cams_per_core": wall / per_cam if per_cam else None,
                "segments": sum(r.get("segments", 0) for r in extra) if role == "recorder" else None,
                "frames": sum(r.get("frames", 0) for r in extra) if role == "decode" else None,
                "gaps": sum(r.get("gaps", 0) for r in extra),
                "detail": extra,
            })
        pub_cpu = sum(b - a for a, b in zip(c0["publisher"], c1["publisher"], strict=True))
        for r in rows:
            r["publisher_cpu_s_per_cam"] = pub_cpu / n_cams
        rec, dec = rows
        ratio = dec["cpu_s_per_cam"] / rec["cpu_s_per_cam"] if rec["cpu_s_per_cam"] else None
        rec["decode_over_recorder"] = ratio
        return rows
    finally:
        stop.set()
        for lst in procs.values():
            for p in lst:
                p.join(15)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


COLUMNS = [
    ("role", "what", 10, "s"),
    ("n_cams", "cams", 5, "d"),
    ("wall_s", "video s", 8, ".1f"),
    ("cpu_s_per_cam", "CPU s/cam", 10, ".2f"),
    ("core_pct_per_cam", "% core/cam", 11, ".1f"),
    ("cams_per_core", "cams/core", 10, ".1f"),
    ("segments", "segments", 9, "d"),
    ("frames", "decoded", 8, "d"),
    ("gaps", "gaps", 5, "d"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = " ".join(_cell(label, width, "s") for _, label, width, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(" ".join(_cell(r.get(k), width, fmt) for k, _, width, fmt in COLUMNS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 camera, 15 s measured (< 60 s)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-recording.json"), help="raw results")
    ap.add_argument("--cams", nargs="+", type=int, help="camera counts (default: 1, or 1 and 4)")
    ap.add_argument("--duration", type=float, help="measured seconds per run")
    args = ap.parse_args(argv)
    args.cams = args.cams or ([1] if args.quick else [1, 4])
    args.duration = args.duration or (15.0 if args.quick else 30.0)
    clip_s = 4.0 if args.quick else 20.0  # looped: two GOPs are enough for the quick run
    warmup = 4.0 if args.quick else 8.0
    ctx = mp.get_context("spawn")
    load_start = os.getloadavg()
    print(f"recording bench: {WIDTH}x{HEIGHT}@{FPS} H.264; cameras {args.cams}; {args.duration:g} s measured "
          f"after {warmup:g} s warm-up; {os.cpu_count()} CPUs", flush=True)
    if load_start[0] > 0.5:
        print(f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs",
              flush=True)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="bench-recording-clip-"))
    try:
        t = time.perf_counter()
        clip = encode_clip(clip_s, work / "clip.pkl")
        print(f"  clip: {clip['frames']} frames, {clip['kbit_s']:.0f} kbit/s, encoded in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        for n in args.cams:
            try:
                got = run(ctx, n, work / "clip.pkl", warmup, args.duration)
                rows += got
                print(f"  {n} cam: recorder {got[0]['core_pct_per_cam']:.1f} % core/cam, decode "
                      f"{got[1]['core_pct_per_cam']:.1f} % core/cam", file=sys.stderr, flush=True)
            except Exception:
                errors.append(traceback.format_exc())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("recorder (remux) vs decode of the same 1080p25 stream, CPU per camera")
    print(format_table(rows))
    for r in rows:
        if r["role"] == "recorder" and r.get("decode_over_recorder"):
            print(f"  {r['n_cams']} cam: decoding costs {r['decode_over_recorder']:.0f}x the recorder's CPU")
    print()
    for key, text in METHOD.items():
        print(f"  {key}: {text}")
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            print("  " + e.strip().splitlines()[-1])
    doc = {
        "bench": "recording",
        "method": METHOD,
        "args": {"quick": args.quick, "cams": args.cams, "duration": args.duration, "clip_s": clip_s,
                 "warmup_s": warmup},
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "load_start": load_start,
                    "python": sys.version.split()[0], "av": metadata.version("av"),
                    "ffmpeg": av.ffmpeg_version_info if hasattr(av, "ffmpeg_version_info") else None,
                    "numpy": np.__version__},
        "clip": clip if "clip" in dir() else None,
        "results": rows,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
