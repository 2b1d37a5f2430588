"""Benchmark: how many 720p @ 15 fps cameras one machine analyses in real time, camfleet vs an OpenCV loop.

Run from the repository root::

    .venv/bin/python bench/capacity.py --quick            # 2 cameras per system and profile (< 60 s)
    .venv/bin/python bench/capacity.py                    # N = 2, then around the estimated maximum
    .venv/bin/python bench/capacity.py --max-cameras 8 --json out.json
    .venv/bin/python bench/capacity.py --profiles always --systems camfleet opencv

Both systems read the same real RTSP streams: camfleet's simulator (:class:`camfleet_testing.sim.SimServer`,
GStreamer's RTSP server) serves N cameras, 1280x720 H.264 at 15 fps with people, a cat and a
motorcycle moving. By default it replays each camera's clip, encoded once before any measurement
(``--sim replay``): the simulator shares the machine with the systems under test, and rendering and
encoding live (``--sim live``) cost ~16 % of a core per camera, which capped every system at ~7
cameras on 2 cores; replaying costs ~1 %.
Two scene profiles in the same run: ``always`` (the objects move all the time:
motion gating never helps) and ``typical`` (they are in the picture 25 % of the time, an empty still
scene otherwise, as real cameras mostly are). For each profile and N, one after the other on the
same streams:

* camfleet: a :class:`camfleet.runtime.Node` with the N cameras (an ingest and a pipeline process per
  camera, one shared detector process), detect stream 640x360 at 5 fps, the pipeline motion -> detect
  (the default model) -> track -> zones -> events;
* camfleet, equal work (``camfleet-eq``): the same node doing what the baseline does: detect on the
  whole frame of every analysed frame, no motion gating, no tracking, no events;
* the baseline a user would otherwise write: one process, one thread per camera, each with its own
  ``cv2.VideoCapture(url)`` that ``grab()``s every frame and ``retrieve()``s (decodes to BGR) only
  every third one, which its own TFLite interpreter runs the same model on (5 fps), no motion gating.

The verdict compares cameras sustained and counts inferences per camera-second for every system
(camfleet's motion-gated detect runs 0-4 crops per frame, the others one image per analysed frame).

The full run measures N = 2 first, estimates the largest N from the CPU per camera, then searches
around the estimate (see ``METHOD["search"]``). See ``METHOD`` below (also printed and stored in the
JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import _smaps
from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from _benchutil import cpu_s as _cpu_s
from _benchutil import dist_version

CAM_W, CAM_H, CAM_FPS = 1280, 720, 15.0  # what the simulated cameras send
CAM_KBPS, CAM_GOP = 2000, 30  # H.264 bitrate (kbit/s) and keyframe interval (frames)
DET_W, DET_H, DET_FPS = 640, 360, 5.0  # what camfleet analyses
INFER_EVERY = round(CAM_FPS / DET_FPS)  # the baseline runs the model on every INFER_EVERY-th frame
MODEL_IN = (300, 300)
SUSTAIN = 0.95  # a rate keeps up when it is at least this fraction of its target
HEADROOM = 0.85  # the search's first guess fills this fraction of the CPUs (sustaining needs slack)
SIM_OBJECTS = [("person", "cat"), ("person", "motorcycle"), ("person",), ("cat", "motorcycle")]
READY_TIMEOUT = 90.0  # s: 2N+1 spawned processes importing numpy/tflite on a busy 2-core machine
SYSTEMS = ("camfleet", "camfleet-eq", "opencv")
LABELS = {"camfleet": "camfleet", "camfleet-eq": "cf equal", "opencv": "OpenCV loop"}
PROFILES = {"always": 1.0, "typical": 0.25}  # fraction of the time the objects are in the picture
TARGETS = (  # issue 13: (profile, system, at least this many times the baseline's cameras)
    ("always", "camfleet", 1.1),
    ("typical", "camfleet", 2.5),
    ("always", "camfleet-eq", 1.1),
)
EQ_CPU_TARGET = 0.9  # equal work: CPU per camera at most this fraction of the baseline's
PSS_TARGET = 1.5  # PSS per camera at most this many times the baseline's

METHOD = {
    "cameras": (
        f"camfleet_testing's SimServer: N cameras, {CAM_W}x{CAM_H} H.264 (x264 ultrafast, zerolatency, "
        f"baseline profile) at {CAM_FPS:g} fps, {CAM_KBPS} kbit/s, keyframe every {CAM_GOP} frames, "
        "RTSP over TCP on 127.0.0.1; photographs of people / a cat / a motorcycle. Profile 'always': "
        "always moving (motion never gates detection off); 'typical': in the picture for 25% of every "
        "period (the period is the measured window, so each camera's window holds exactly that share, "
        "each camera at its own phase), an empty still scene otherwise. A fresh server per profile and "
        "N; every system reads the same streams, one after the other. --sim replay (default): each "
        "camera's stream is encoded once, before any window (PyAV libx264, the same settings; one "
        "period long, cached in ~/.cache/camfleet/sim-clips), and the server replays it at 15 fps, "
        "looping (the objects jump back once per period): the simulator shares the cores with the "
        "systems under test, and live rendering + encoding costs ~16% of a core per camera against "
        "~1% replayed. --sim live renders and encodes every frame as it is sent"
    ),
    "camfleet": (
        "camfleet.runtime.Node, config built as YAML text (runtime.default's template with rtsp sources, "
        f"snapshot element left out): detect {DET_W}x{DET_H} @ {DET_FPS:g} fps, pipeline motion -> detect "
        "(ssd-mobilenet-v2, min_score 0.5) -> track -> zones -> events; detectors: cpu {tflite, processes "
        "1, threads 1, max_batch 8, max_wait_ms 10} as runtime.default (--detector-processes and "
        "--detector-threads change it). Per camera an ingest process (PyAV demux + decode of every frame, "
        "scale, publish 5 fps to the frame ring) and a pipeline process. 'cf equal' (camfleet-eq): the "
        "same node with the pipeline reduced to the baseline's work: detect {mode: frame} on every "
        "analysed frame, nothing else"
    ),
    "opencv": (
        "the loop a user writes: one process, one thread per camera: cv2.VideoCapture(url, CAP_FFMPEG) "
        "(OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp, like camfleet), cap.grab() of every frame, "
        f"cap.retrieve() (BGR {CAM_W}x{CAM_H}) of every {INFER_EVERY}rd only, cv2.resize to 300x300 + "
        "BGR->RGB and the same "
        "model through camfleet.detect.load_runtime(spec, threads=1) (one TFLite interpreter per thread). "
        "No motion gating, no tracking: the plain loop. A read failure reopens the capture"
    ),
    "in fps": (
        "frames per second each camera's stream was read at, over the window: camfleet: packets demuxed "
        "(packet ring sequence numbers; demux and decode share one thread, one packet per frame); "
        "baseline: successful cap.grab() calls. 'min' is the slowest camera"
    ),
    "inf/cs": (
        "inferences (model runs on one image) per camera-second: camfleet: images the detector "
        "processes ran over the window / window / N (a motion-gated frame may need 0 to 4 crops); "
        "baseline: model runs per second per camera (mean)"
    ),
    "an fps": (
        "frames analysed per second per camera: camfleet: frames the pipeline process took from the frame "
        "ring (its 'pipeline' subscriber's delivered counter; the ring gets 5 fps); baseline: model runs"
    ),
    "sustained": (
        f"every camera: in fps >= {SUSTAIN:.0%} of {CAM_FPS:g} and analysed fps >= {SUSTAIN:.0%} of "
        f"{DET_FPS:g} over the whole window (less one frame of slack for where the window's edges fall), "
        "with no process restarted and no error"
    ),
    "lag": (
        "growth of the stream's lag behind the wall clock over the window, seconds: window - (stream "
        "time of the last frame at the end - at the start); camfleet: pts of the frame ring (the "
        "decoded, published frames), baseline: CAP_PROP_POS_MSEC of the last frame read. ~0 when "
        "decoding keeps up; it grows when a reader falls behind a stream that buffers"
    ),
    "CPU%": (
        "user+system CPU time over the window of the processes of the system under test, / window, in % "
        "of one core (200 = both cores of a 2-core machine): camfleet: every process of the node (ingest, "
        "pipeline, detector, their children, the fork server they start from) plus the Node's own threads "
        "(supervisor, event sink, detector watchdogs), which run in the bench process; baseline: its "
        "process. /cam: divided by N. The simulator (GStreamer server + the frame feeders, in the bench "
        "process) is not counted"
    ),
    "memory": (
        "RSS and PSS (shared pages split among the processes sharing them: sums are not double counted) "
        "in MiB, summed over the same processes, right after the window; the cost lines give PSS per "
        "camera by process kind (ingest, pipeline, detector, forkserver: their PSS / N) and by kind of "
        "mapping from /proc/PID/smaps (bench/_smaps.py: heap = malloc and Python objects, libs = shared "
        "objects, shm = the rings in /dev/shm, files = other mapped files, stacks = thread stacks)"
    ),
    "cost": (
        "per run, CPU% per camera and CPU ms per frame of each process kind (CPU time over the window / "
        "frames: ingest per frame read, pipeline per frame analysed, detector per image; the baseline's "
        "one process per frame read): CPU time per frame hardly moves with other load on the machine, "
        "unlike throughput. bench/camera_cost.py compares two source trees' per-frame costs in one run"
    ),
    "sim%": (
        "CPU% of the simulator's RTSP server process plus the bench process (frame feeders in live "
        "mode, polling), less the Node's threads counted above"
    ),
    "other%": (
        "CPU% the rest of the machine used during the window (all-core busy time minus the system under "
        "test and sim%): other work sharing the cores; rows with a high value were disturbed"
    ),
    "search": (
        "per profile and system: --quick runs N = 2 only (one run each); the full run measures N = 2, "
        f"estimates the largest N as {HEADROOM:.0%} of the CPUs / (CPU% + sim%) per camera there (for "
        "camfleet also its detector threads' capacity / the detector's CPU% per camera), runs the "
        "estimate, then steps up (+1, +2, +4, ...) while sustained or down (-1, -2, -4, ...) while not, "
        "and bisects the gap, until it has a sustained N next to one that was not (or --max-cameras). "
        "'max sustained' is the largest N sustained below the smallest N that was not; 'tried' lists "
        "every N run. --cams runs exactly the counts given"
    ),
    "an ms": (
        "camfleet: the pipeline's lag gauge from node.status() (frame published by ingest -> analysed "
        "through events), sampled twice a second over the window, mean; baseline: cap.grab() returning "
        "-> the model's answer, mean over analysed frames. Not the same span (camfleet's includes the "
        "wait in the ring); neither includes the camera -> decoder part. A camfleet pipeline analyses one "
        "frame at a time, so above 1000 / 5 = 200 ms it cannot reach 5 fps"
    ),
    "wait%": (
        "time the system under test's threads spent runnable but waiting for a CPU (Linux schedstat "
        "run_delay), / window, in % of one core: what the rest of the machine held it back by. Compare "
        "with CPU%: a run that was not sustained with a high wait% was starved, not too slow by itself"
    ),
    "extrapolated": (
        "not a measurement: CPUs x 100 / CPU% per camera at the largest N sustained, i.e. the cameras an "
        "otherwise idle machine would fit if the cost per camera stayed the same; for camfleet also "
        "detector processes x threads x 100 / the detector's CPU% per camera (one inference thread can "
        "use one core at most). It ignores latency: a camfleet pipeline has one frame in flight, so it "
        "analyses at most 1000 / 'an ms' frames/s per camera, and 'an ms' grows with the cameras queued "
        "at the shared detector (the model runs one image at a time) and with CPU contention"
    ),
    "simskip": (
        "frames the simulator's feeders skipped during the window because the machine was too busy to "
        "render them on time (replay: frames the server skipped after falling > 2 s behind its clock): "
        "> 0 means the streams themselves were short of 15 fps"
    ),
}


# --------------------------------------------------------------------------- helpers
def _busy_s() -> float:
    """CPU time the whole machine has spent busy (all cores), seconds; guest time is inside user already."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _err_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def _procs_of(pids: list[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants (those alive)."""
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            out[pid] = p
            for c in p.children(recursive=True):
                out[c.pid] = c
    return list(out.values())


def _cpu_map(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out[p.pid] = _cpu_s(p)
    return out


def _run_delay(procs: list[psutil.Process], own_threads: set[int]) -> dict[tuple[int, int], float]:
    """Seconds each thread of ``procs`` (and ``own_threads`` of this process) waited for a CPU, by (pid, tid).

    From /proc/PID/task/TID/schedstat (time runnable but not running): how much the system under
    test was held back by everything else on the machine. Empty where the kernel does not keep it.
    """
    out: dict[tuple[int, int], float] = {}
    me = os.getpid()
    targets = [(p.pid, None) for p in procs] + [(me, tid) for tid in own_threads]
    for pid, only in targets:
        tids = [only] if only is not None else []
        if only is None:
            with contextlib.suppress(OSError):
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        for tid in tids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[(pid, tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1]) / 1e9
    return out


def _memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    """Summed RSS and PSS of ``procs``, MiB."""
    rss = pss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            m = p.memory_full_info()
            rss += m.rss
            pss += getattr(m, "pss", m.rss)
    return rss / 2**20, pss / 2**20


def _node_threads() -> set[int]:
    """Native ids of the Node's threads in this process (supervisor, event sink, detector watchdogs)."""
    return {t.native_id for t in threading.enumerate() if t.native_id is not None
            and t.name.startswith(("camfleet-", "detector-")) and not t.name.startswith("camfleet-sim")}


def _forkservers() -> list[psutil.Process]:
    """This process's multiprocessing fork servers (the Node forks its camera processes from one)."""
    return [c for c in psutil.Process().children()
            if "multiprocessing.forkserver" in " ".join(_safe_cmdline(c))]


def _thread_cpu(tids: set[int]) -> dict[int, float]:
    """CPU seconds of the threads ``tids`` of this process."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads() if t.id in tids}


def _sim_procs() -> list[psutil.Process]:
    """The simulator's RTSP server process(es) and this process (which renders and feeds the frames)."""
    me = psutil.Process()
    out = [me]
    for c in me.children(recursive=False):
        with contextlib.suppress(psutil.Error):
            if any("_gst_server" in part for part in c.cmdline()):
                out.append(c)
    return out


@dataclass
class Window:
    """CPU counters of the system under test, the simulator and the machine at one instant.

    ``threads``: the system under test's threads inside this process (the Node's supervisor runs
    here), counted for it and taken out of the simulator's share of this process.
    """

    t: float
    sut: dict[int, float]
    threads: dict[int, float]
    sim: dict[int, float]
    busy: float
    wait: dict[tuple[int, int], float]

    @classmethod
    def take(cls, sut: list[psutil.Process], sim: list[psutil.Process], threads: set[int] | None = None
             ) -> Window:
        threads = threads or set()
        return cls(time.monotonic(), _cpu_map(sut), _thread_cpu(threads), _cpu_map(sim), _busy_s(),
                   _run_delay(sut, threads))


def _delta(a: dict[Any, float], b: dict[Any, float]) -> float:
    return sum(b[k] - a[k] for k in b if k in a)


def _cpu_summary(w0: Window, w1: Window, n: int) -> dict[str, Any]:
    """CPU% (of one core) of the system under test, per camera, of the simulator and of everything else."""
    wall = w1.t - w0.t
    threads = _delta(w0.threads, w1.threads)
    sut = _delta(w0.sut, w1.sut) + threads
    sim = _delta(w0.sim, w1.sim) - threads
    busy = w1.busy - w0.busy
    return {
        "window_s": wall,
        "cpu_pct": 100 * sut / wall,
        "cpu_pct_cam": 100 * sut / wall / n,
        "sim_pct": 100 * sim / wall,
        "other_pct": 100 * max(0.0, busy - sut - sim) / wall,
        "wait_pct": 100 * _delta(w0.wait, w1.wait) / wall if w1.wait else None,
        "machine_pct": 100 * busy / wall,
        "lost_pids": sorted(set(w0.sut) - set(w1.sut)),
    }


def _sustained(in_fps: list[float], an_fps: list[float], window: float) -> tuple[bool, str]:
    """Whether every camera kept up with its input and analysis rates, and if not, why.

    One frame of slack over the window: where its edges fall between frames is chance.
    """
    why = []
    slack = 1.0 / window
    slow_in = [i + 1 for i, f in enumerate(in_fps) if f + slack < SUSTAIN * CAM_FPS]
    slow_an = [i + 1 for i, f in enumerate(an_fps) if f + slack < SUSTAIN * DET_FPS]
    if slow_in:
        why.append(f"input < {SUSTAIN * CAM_FPS:.2f} fps on cam {','.join(map(str, slow_in))}")
    if slow_an:
        why.append(f"analysis < {SUSTAIN * DET_FPS:.2f} fps on cam {','.join(map(str, slow_an))}")
    return not why, "; ".join(why)


def _why(why: str, row: dict[str, Any]) -> str:
    """Why a run was not sustained (errors included), noting when the simulator itself fell behind."""
    parts = [why] if why else []
    parts += [_err_line(e) for e in row["errors"]]
    skipped = row["summary"].get("sim_skipped", 0)
    if parts and skipped:
        parts.append(f"the simulator itself skipped {skipped} frame(s): the machine was saturated")
    return "; ".join(parts)


def _per_camera_summary(in_fps: list[float], an_fps: list[float], lag: list[float | None]) -> dict[str, Any]:
    lags = [v for v in lag if v is not None]
    return {
        "in_fps_min": min(in_fps),
        "in_fps_mean": float(np.mean(in_fps)),
        "an_fps_min": min(an_fps),
        "an_fps_mean": float(np.mean(an_fps)),
        "lag_growth_max_s": max(lags) if lags else None,
    }


# --------------------------------------------------------------------------- the cameras
def _camera_names(n: int) -> list[str]:
    return [f"cap{i + 1}" for i in range(n)]


def sim_specs(n: int, active: float = 1.0, period_s: float = 40.0) -> list[Any]:
    """The ``n`` 720p15 H.264 cameras, objects in the picture ``active`` of every ``period_s`` seconds."""
    from camfleet_testing.sim import CameraSpec

    return [
        CameraSpec(name=name, codec="h264", width=CAM_W, height=CAM_H, fps=CAM_FPS, bitrate_kbps=CAM_KBPS,
                   gop=CAM_GOP, seed=i, objects=SIM_OBJECTS[i % len(SIM_OBJECTS)], active=active,
                   active_period_s=period_s)
        for i, name in enumerate(_camera_names(n))
    ]


def start_sim(n: int, active: float = 1.0, period_s: float = 40.0, mode: str = "replay") -> Any:
    """A running SimServer with :func:`sim_specs` cameras, live or replaying clips (encoded first if new)."""
    from camfleet_testing.sim import SimServer

    sim = SimServer(sim_specs(n, active, period_s), mode="replay" if mode == "replay" else "live")
    sim.open()
    return sim


def prepare_clips(n: int, active: float, period_s: float) -> float:
    """Encode the replay clips of ``n`` cameras not cached yet (before any window); seconds it took."""
    from camfleet_testing.sim.clips import ensure_clips

    t = time.perf_counter()
    ensure_clips(sim_specs(n, active, period_s))
    return time.perf_counter() - t


def _sim_skipped(sim: Any) -> int:
    return sum(sim.frames_skipped(name) for name in sim.cameras)


# --------------------------------------------------------------------------- camfleet
_CONFIG = """
version: 1
data_dir: {data_dir}
models:
  ssd-mobilenet-v2:
    path: {model}
    runtime: tflite
    input: {{width: 300, height: 300}}
    labels: {labels}
detectors:
  cpu: {{runtime: tflite, processes: {det_procs}, threads: {det_threads}, max_batch: 8, max_wait_ms: 10}}
pipelines:
  default:
{pipeline}
defaults:
  detect: {{width: {det_w}, height: {det_h}, fps: {det_fps:g}}}
  pipeline: default
cameras:
{cameras}
"""


_FULL_PIPELINE = """    - motion: {{}}
    - detect: {{model: ssd-mobilenet-v2, detector: cpu, min_score: 0.5}}
    - track: {{fps: {det_fps:g}, max_disappeared_s: 3}}
    - zones: {{}}
    - events: {{min_frames: 3}}"""
_EQUAL_PIPELINE = """    - detect: {{model: ssd-mobilenet-v2, detector: cpu, min_score: 0.5, mode: frame}}"""


def camfleet_config(urls: dict[str, str], data_dir: Path, det_procs: int = 1, det_threads: int = 1,
                    equal_work: bool = False) -> Any:
    """The node's configuration: runtime.default's template with the simulator's RTSP cameras.

    ``equal_work``: the pipeline is only the baseline's work (detect on the whole frame, every frame).
    """
    from camfleet.config import load_config_text
    from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir

    cams = "\n".join(
        f"  {name}:\n    sources: [{{url: \"{url}\", roles: [detect], transport: tcp}}]\n"
        f"    zones:\n      left: {{points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}"
        for name, url in urls.items()
    )
    text = _CONFIG.format(
        data_dir=str(data_dir.resolve()), model=str(models_dir() / DEFAULT_MODEL_FILE),
        labels=str(models_dir() / DEFAULT_LABELS_FILE), det_w=DET_W, det_h=DET_H, det_fps=DET_FPS,
        det_procs=det_procs, det_threads=det_threads, cameras=cams,
        pipeline=(_EQUAL_PIPELINE if equal_work else _FULL_PIPELINE).format(det_fps=DET_FPS),
    )
    return load_config_text(text, source="<bench/capacity.py>")


@dataclass
class RingSnap:
    """One camera's ring counters at one instant (from the shared-memory headers, nothing registered)."""

    t: float
    packets: int
    frames: int
    frame_pts: int
    delivered: int
    skipped: int
    pipeline_pid: int


def _ring_snap(camera: str) -> RingSnap | None:
    from camfleet.framebus.inspect import ring_info
    from camfleet.framebus.layout import KIND_FRAMES, KIND_PACKETS

    t = time.monotonic()
    pk = ring_info(camera, KIND_PACKETS)
    fr = ring_info(camera, KIND_FRAMES)
    if pk.error or fr.error:
        return None
    subs = [s for s in fr.subscribers if s.name == "pipeline" and s.alive]
    if not subs:
        return None
    return RingSnap(t, pk.last_seq, fr.last_seq, fr.last_pts, subs[0].delivered, subs[0].skipped, subs[0].pid)


def _time_base(camera: str) -> float | None:
    """Seconds per pts tick of ``camera``'s stream (from its packet ring)."""
    from camfleet import framebus

    with contextlib.suppress(Exception), framebus.subscribe_packets(camera, name="bench-tb") as sub:
        num, den = sub.time_base
        return num / den if den else None
    return None


def _node_pids(node: Any) -> dict[str, int]:
    return {name: pid for name, pid in node.processes().items() if pid is not None}


def _node_status(node: Any) -> dict[str, Any] | None:
    """``node.status()`` per camera (rates over the node's own recent window), where the Node has it."""
    status = getattr(node, "status", None)
    if not callable(status):
        return None
    try:
        st = status()
        return {
            name: {k: getattr(c, k, None) for k in
                   ("state", "decode_fps", "processed_fps", "skipped_fps", "detector_rps", "inference_ms",
                    "cpu_percent", "rss_mb", "restarts")}
            for name, c in st.cameras.items()
        }
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _sample_lag(node: Any, cams: list[str], until: float) -> dict[str, list[float]]:
    """Sleep until ``until``, sampling each pipeline's lag gauge (ms from publish to analysed) twice a second.

    The gauge is the last frame's, from ``node.status()``; empty lists where the Node has no status yet.
    """
    out: dict[str, list[float]] = {c: [] for c in cams}
    status = getattr(node, "status", None)
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
        if not callable(status):
            continue
        with contextlib.suppress(Exception):
            st = status()
            for c in cams:
                proc = st.cameras[c].processes.get("pipeline")
                lag = proc.metrics.get("lag_ms") if proc is not None else None
                if lag:
                    out[c].append(float(lag))
    return out


def _mean_of(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def run_camfleet(
    sim: Any, n: int, warmup: float, window: float, data_dir: Path, detector: tuple[int, int] = (1, 1),
    equal_work: bool = False,
) -> dict[str, Any]:
    """N cameras through a camfleet Node: start, wait for every pipeline, warm up, measure, stop."""
    from camfleet.detect.service import read_heartbeat
    from camfleet.runtime import Node

    cams = _camera_names(n)
    row: dict[str, Any] = {"system": "camfleet-eq" if equal_work else "camfleet", "n_cams": n,
                           "errors": [], "summary": {},
                           "detector": {"processes": detector[0], "threads": detector[1]},
                           "loadavg_start": os.getloadavg()}
    t_start = time.perf_counter()
    node = None
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir))  # each run its own journal and events
        node = Node(camfleet_config({c: sim.url(c) for c in cams}, run_dir, *detector, equal_work=equal_work))
        node.start()
        _STARTED.update(pid for pid in node.processes().values() if pid is not None)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            snaps = {c: _ring_snap(c) for c in cams}
            if all(s is not None and s.delivered > 0 for s in snaps.values()):
                break
            if time.monotonic() > deadline:
                waiting = [c for c, s in snaps.items() if s is None or s.delivered == 0]
                raise TimeoutError(f"cameras {waiting} analysed no frame within {READY_TIMEOUT:g} s")
            time.sleep(0.25)
        row["startup_s"] = time.perf_counter() - t_start
        tb = {c: _time_base(c) for c in cams}
        time.sleep(warmup)

        pids0 = _node_pids(node)
        sut = _procs_of(list(pids0.values())) + _forkservers()
        threads = _node_threads()
        sim_p = _sim_procs()
        detectors = [name.split("/", 1)[1] for name in pids0 if name.startswith("detector/")]
        skipped0 = _sim_skipped(sim)
        hb0 = {d: read_heartbeat(d) for d in detectors}
        r0 = {c: _ring_snap(c) for c in cams}
        w0 = Window.take(sut, sim_p, threads)
        lag_ms = _sample_lag(node, cams, w0.t + window)
        w1 = Window.take(sut, sim_p, threads)
        r1 = {c: _ring_snap(c) for c in cams}
        hb1 = {d: read_heartbeat(d) for d in detectors}
        skipped1 = _sim_skipped(sim)
        pids1 = _node_pids(node)
        row["node_status"] = _node_status(node)
        rss, pss = _memory_mb(sut)

        per_cam = []
        for c in cams:
            a, b = r0[c], r1[c]
            if a is None or b is None or a.pipeline_pid != b.pipeline_pid:
                row["errors"].append(f"camera {c}: its pipeline or ring went away during the window")
                per_cam.append({"camera": c, "in_fps": 0.0, "pub_fps": 0.0, "an_fps": 0.0, "skip_fps": 0.0,
                                "lag_growth_s": None})
                continue
            dt = b.t - a.t
            tbc = tb.get(c)
            per_cam.append({
                "camera": c,
                "in_fps": (b.packets - a.packets) / dt,
                "pub_fps": (b.frames - a.frames) / dt,
                "an_fps": (b.delivered - a.delivered) / dt,
                "skip_fps": (b.skipped - a.skipped) / dt,
                "lag_growth_s": dt - (b.frame_pts - a.frame_pts) * tbc if tbc else None,
                "proc_ms_mean": float(np.mean(lag_ms[c])) if lag_ms[c] else None,
                "proc_ms_max": max(lag_ms[c]) if lag_ms[c] else None,
            })
        if pids1 != pids0:
            changed = sorted(k for k in pids0 if pids1.get(k) != pids0[k])
            row["errors"].append(f"process(es) restarted during the window: {changed}")
        det = {"images": 0, "batches": 0, "infer_ns": 0}
        for d in detectors:
            h0, h1 = hb0[d], hb1[d]
            if h0 is not None and h1 is not None and h0.pid == h1.pid:
                det["images"] += h1.images - h0.images
                det["batches"] += h1.batches - h0.batches
                det["infer_ns"] += h1.infer_ns - h0.infer_ns
        in_fps = [p["in_fps"] for p in per_cam]
        an_fps = [p["an_fps"] for p in per_cam]
        cpu = _cpu_summary(w0, w1, n)
        ok, why = _sustained(in_fps, an_fps, cpu["window_s"])
        s = {
            **_per_camera_summary(in_fps, an_fps, [p["lag_growth_s"] for p in per_cam]),
            "pub_fps_min": min(p["pub_fps"] for p in per_cam),
            "proc_ms": _mean_of(p.get("proc_ms_mean") for p in per_cam),
            "skip_fps_mean": float(np.mean([p["skip_fps"] for p in per_cam])),
            "det_img_s": det["images"] / cpu["window_s"],
            "inf_cam_s": det["images"] / cpu["window_s"] / n,
            "infer_s": det["batches"] / cpu["window_s"],
            "infer_ms": det["infer_ns"] / det["batches"] / 1e6 if det["batches"] else None,
            "mean_batch": det["images"] / det["batches"] if det["batches"] else None,
            **cpu,
            "rss_mb": rss,
            "pss_mb": pss,
            "processes": len(sut),
            "sim_skipped": skipped1 - skipped0,
        }
        row["cameras"] = per_cam
        row["pids"] = pids0
        named = {**pids0, **{f"forkserver/{p.pid}": p.pid for p in _forkservers()}}
        row["cpu_by_process"] = {
            name: 100 * (w1.sut.get(pid, 0.0) - w0.sut.get(pid, 0.0)) / cpu["window_s"]
            for name, pid in named.items()
        }
        # each process alone: the forkserver's descendants are the camera processes, counted by name
        row["pss_by_process"] = {name: _memory_mb(_procs_of([pid])[:1])[1] for name, pid in named.items()}
        # where it goes (heap, libraries, shm rings...), per process, from /proc/PID/smaps
        row["smaps_by_process"] = {name: b.as_mib() for name, pid in named.items()
                                   if (b := _smaps.breakdown(pid)) is not None}
        row["cpu_by_process"]["node threads in the bench process"] = (
            100 * _delta(w0.threads, w1.threads) / cpu["window_s"])
        row["wait_by_process"] = {
            name: 100 * sum(w1.wait[k] - w0.wait[k] for k in w1.wait if k in w0.wait and k[0] == pid)
            / cpu["window_s"]
            for name, pid in pids0.items()
        }
        row["summary"] = s
        row["sustained"] = ok and not row["errors"]
        row["why"] = _why(why, row)
    except Exception:
        row["errors"].append(traceback.format_exc())
        row["sustained"] = False
        row["why"] = _err_line(row["errors"][-1])
    finally:
        if node is not None:
            stragglers = list(_node_pids(node).values())
            node.stop()
            _kill_alive(stragglers)
    row["elapsed_s"] = time.perf_counter() - t_start
    return row


# --------------------------------------------------------------------------- the OpenCV baseline
@dataclass
class CamCounters:
    """One baseline camera's counters (written by its thread, read by the worker's main thread)."""

    reads: int = 0
    infers: int = 0
    pos_ms: float = 0.0
    read_failures: int = 0
    reopens: int = 0
    detections: int = 0
    analyse_ms: float = 0.0  # summed time from cap.read() returning to the model's answer, analysed frames
    error: str = ""


def _baseline_camera(url: str, c: CamCounters, stop: threading.Event) -> None:
    """What a user writes: grab every frame, decode and run the model on every third one."""
    import cv2

    from camfleet.detect import default_model_spec, load_runtime

    try:
        runtime = load_runtime(default_model_spec(), threads=1)  # one interpreter per camera thread
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise RuntimeError("cv2.VideoCapture could not open the stream")
        while not stop.is_set():
            ok = cap.grab()
            t_read = time.perf_counter()
            if not ok:
                c.read_failures += 1
                cap.release()
                time.sleep(1.0)
                cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
                c.reopens += 1
                continue
            c.reads += 1
            c.pos_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            if c.reads % INFER_EVERY == 0:
                ok, frame = cap.retrieve()
                if not ok:
                    c.read_failures += 1
                    continue
                small = cv2.resize(frame, MODEL_IN, interpolation=cv2.INTER_LINEAR)
                rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                c.detections += len(runtime.detect(rgb))
                c.analyse_ms += (time.perf_counter() - t_read) * 1e3
                c.infers += 1
        cap.release()
        runtime.close()
    except Exception:
        c.error = traceback.format_exc()


def _baseline_worker(conn: Any, urls: list[str]) -> None:
    """The baseline process: one thread per camera; answers ("snap",) with the counters until ("exit",)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us in order
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    stop = threading.Event()
    counters = [CamCounters() for _ in urls]
    threads = [threading.Thread(target=_baseline_camera, args=(u, c, stop), name=f"cam{i + 1}", daemon=True)
               for i, (u, c) in enumerate(zip(urls, counters, strict=True))]
    for t in threads:
        t.start()
    try:
        while True:
            msg = conn.recv()
            if msg[0] != "snap":
                break
            conn.send(("snap", time.monotonic(), [asdict(c) for c in counters]))
    except (EOFError, OSError):
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        conn.close()


def _snap(conn: Any) -> tuple[float, list[dict[str, Any]]]:
    conn.send(("snap",))
    if not conn.poll(10):
        raise TimeoutError("the baseline process did not answer within 10 s")
    _, t, counters = conn.recv()
    return t, counters


def run_baseline(ctx: Any, sim: Any, n: int, warmup: float, window: float) -> dict[str, Any]:
    """N cameras through the OpenCV loop in a spawned process: start, wait, warm up, measure, stop."""
    cams = _camera_names(n)
    row: dict[str, Any] = {"system": "opencv", "n_cams": n, "errors": [], "summary": {},
                           "loadavg_start": os.getloadavg()}
    t_start = time.perf_counter()
    proc = None
    conn = None
    try:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_baseline_worker, args=(child, [sim.url(c) for c in cams]),
                           name="bench-opencv", daemon=True)
        proc.start()
        _STARTED.add(proc.pid)
        child.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            _, counters = _snap(conn)
            errors = [c["error"] for c in counters if c["error"]]
            if errors:
                raise RuntimeError(f"a baseline camera failed:\n{errors[0]}")
            if all(c["infers"] > 0 for c in counters):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the baseline cameras ran no model within {READY_TIMEOUT:g} s")
            time.sleep(0.25)
        row["startup_s"] = time.perf_counter() - t_start
        time.sleep(warmup)

        sut = _procs_of([proc.pid])
        sim_p = _sim_procs()
        skipped0 = _sim_skipped(sim)
        w0 = Window.take(sut, sim_p)
        t0, c0 = _snap(conn)
        time.sleep(window)
        t1, c1 = _snap(conn)
        w1 = Window.take(sut, sim_p)
        skipped1 = _sim_skipped(sim)
        rss, pss = _memory_mb(sut)
        row["smaps"] = _smaps.total(p.pid for p in sut).as_mib()
        dt = t1 - t0
        per_cam = []
        for name, a, b in zip(cams, c0, c1, strict=True):
            if b["error"]:
                row["errors"].append(f"camera {name}: {_err_line(b['error'])}")
            if b["reopens"] != a["reopens"]:
                row["errors"].append(f"camera {name}: the capture was reopened during the window")
            per_cam.append({
                "camera": name,
                "in_fps": (b["reads"] - a["reads"]) / dt,
                "an_fps": (b["infers"] - a["infers"]) / dt,
                "lag_growth_s": dt - (b["pos_ms"] - a["pos_ms"]) / 1e3,
                "proc_ms_mean": (b["analyse_ms"] - a["analyse_ms"]) / max(1, b["infers"] - a["infers"]),
                "read_failures": b["read_failures"] - a["read_failures"],
                "dets_per_infer": (b["detections"] - a["detections"]) / max(1, b["infers"] - a["infers"]),
            })
        in_fps = [p["in_fps"] for p in per_cam]
        an_fps = [p["an_fps"] for p in per_cam]
        cpu = _cpu_summary(w0, w1, n)
        ok, why = _sustained(in_fps, an_fps, cpu["window_s"])
        row["cameras"] = per_cam
        row["summary"] = {
            **_per_camera_summary(in_fps, an_fps, [p["lag_growth_s"] for p in per_cam]),
            "det_img_s": sum(an_fps),
            "inf_cam_s": float(np.mean(an_fps)),
            "proc_ms": _mean_of(p["proc_ms_mean"] for p in per_cam),
            **cpu,
            "rss_mb": rss,
            "pss_mb": pss,
            "processes": len(sut),
            "sim_skipped": skipped1 - skipped0,
        }
        row["sustained"] = ok and not row["errors"]
        row["why"] = _why(why, row)
    except Exception:
        row["errors"].append(traceback.format_exc())
        row["sustained"] = False
        row["why"] = _err_line(row["errors"][-1])
    finally:
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("exit",))
        if proc is not None:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if conn is not None:
            conn.close()
    row["elapsed_s"] = time.perf_counter() - t_start
    return row


# --------------------------------------------------------------------------- cleanup
_STARTED: set[int] = set()  # pids of processes this run started that may outlive an interrupted stop


def _kill_alive(pids: list[int]) -> None:
    """SIGKILL those of ``pids`` that are still alive and still our children (never anything else)."""
    me = os.getpid()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.is_running() and me in {a.pid for a in p.parents()}:
                p.kill()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- report
Column = tuple[str, int, str, str]  # header, width, format, key

SIDE_COLUMNS: list[Column] = [
    ("ok", 3, "s", "ok"),
    ("in min", 6, ".1f", "in_fps_min"),
    ("an min", 6, ".2f", "an_fps_min"),
    ("inf/cs", 6, ".2f", "inf_cam_s"),
    ("CPU%", 5, ".0f", "cpu_pct"),
    ("/cam", 4, ".0f", "cpu_pct_cam"),
    ("PSS MB", 6, ".0f", "pss_mb"),
    ("wait%", 5, ".0f", "wait_pct"),
]
DETAIL_COLUMNS: list[Column] = [
    ("system", 11, "s", "label"),
    ("profile", 7, "s", "profile"),
    ("cams", 4, "d", "n_cams"),
    ("ok", 3, "s", "ok"),
    ("in min", 6, ".1f", "in_fps_min"),
    ("in avg", 6, ".1f", "in_fps_mean"),
    ("an min", 6, ".2f", "an_fps_min"),
    ("an avg", 6, ".2f", "an_fps_mean"),
    ("lag s", 5, ".2f", "lag_growth_max_s"),
    ("an ms", 5, ".0f", "proc_ms"),
    ("det/s", 5, ".1f", "det_img_s"),
    ("inf/cs", 6, ".2f", "inf_cam_s"),
    ("ms/inf", 6, ".1f", "infer_ms"),
    ("CPU%", 5, ".0f", "cpu_pct"),
    ("/cam", 4, ".0f", "cpu_pct_cam"),
    ("RSS MB", 6, ".0f", "rss_mb"),
    ("PSS MB", 6, ".0f", "pss_mb"),
    ("procs", 5, "d", "processes"),
    ("sim%", 4, ".0f", "sim_pct"),
    ("simskip", 7, "d", "sim_skipped"),
    ("other%", 6, ".0f", "other_pct"),
    ("wait%", 5, ".0f", "wait_pct"),
    ("start s", 7, ".1f", "startup_s"),
]


def _values(r: dict[str, Any]) -> dict[str, Any]:
    v = dict(r.get("summary", {}))
    v["label"] = LABELS[r["system"]]
    v["profile"] = r.get("profile", "")
    v["n_cams"] = r["n_cams"]
    v["ok"] = "yes" if r.get("sustained") else ("ERR" if "cpu_pct" not in v else "no")
    v["startup_s"] = r.get("startup_s")
    return v


def side_by_side(rows: list[dict[str, Any]], systems: list[str]) -> str:
    group = sum(w for _, w, _, _ in SIDE_COLUMNS) + len(SIDE_COLUMNS) - 1
    top = "cams | " + " | ".join(LABELS[s].center(group) for s in systems)
    head = "     | " + " | ".join(" ".join(h.rjust(w) for h, w, _, _ in SIDE_COLUMNS) for _ in systems)
    lines = [top, head, "-" * len(head)]
    by = {(r["system"], r["n_cams"]): r for r in rows}
    for n in sorted({r["n_cams"] for r in rows}):
        cells = []
        for s in systems:
            r = by.get((s, n))
            if r is None:
                cells.append("(not run)".center(group))
            else:
                v = _values(r)
                cells.append(" ".join(_cell(v.get(k), w, f) if f != "s" else str(v.get(k, "")).rjust(w)
                                      for _, w, f, k in SIDE_COLUMNS))
        lines.append(f"{n:>4} | " + " | ".join(cells))
    return "\n".join(lines)


def detail_table(rows: list[dict[str, Any]]) -> str:
    header = " ".join(c[0].ljust(c[1]) if i == 0 else c[0].rjust(c[1]) for i, c in enumerate(DETAIL_COLUMNS))
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: (list(PROFILES).index(r["profile"]), SYSTEMS.index(r["system"]),
                                         r["n_cams"])):
        v = _values(r)
        lines.append(" ".join(
            (str(v.get(k, "")).ljust(w) if i == 0 else str(v.get(k, "")).rjust(w)) if f == "s"
            else _cell(v.get(k), w, f)
            for i, (_, w, f, k) in enumerate(DETAIL_COLUMNS)
        ))
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]], systems: list[str]) -> dict[str, dict[str, Any]]:
    """Per system: the largest N sustained below the smallest N not sustained, and CPU per camera there."""
    out = {}
    for s in systems:
        mine = [r for r in rows if r["system"] == s]
        failed = [r["n_cams"] for r in mine if not r.get("sustained")]
        hi = min(failed) if failed else None
        ok = [r for r in mine if r.get("sustained") and (hi is None or r["n_cams"] < hi)]
        best = max(ok, key=lambda r: r["n_cams"]) if ok else None
        lo = best["n_cams"] if best else 0
        fail_row = next((r for r in mine if r["n_cams"] == hi), None)
        out[s] = {
            "max_sustained": lo,
            "cpu_pct_cam": best["summary"]["cpu_pct_cam"] if best else None,
            "pss_mb_cam": best["summary"]["pss_mb"] / best["n_cams"] if best else None,
            "inf_cam_s": best["summary"].get("inf_cam_s") if best else None,
            "cpu_pct": best["summary"]["cpu_pct"] if best else None,
            "first_failed": hi,
            "untried_between": hi is not None and hi - lo > 1,
            "why": fail_row.get("why") if fail_row else None,
            "tried": sorted(r["n_cams"] for r in mine),
            "order": [r["n_cams"] for r in mine],  # as run
            **_extrapolate(best),
        }
    return out


def _extrapolate(best: dict[str, Any] | None) -> dict[str, Any]:
    """Not measured: cameras the whole machine would fit at the CPU per camera measured at ``best``.

    ``idle_estimate``: all CPUs / CPU% per camera (no simulator, no other work, perfect scaling);
    ``detector_cap`` (camfleet): inference capacity of the detector's threads / detector CPU per camera.
    """
    if best is None or not best["summary"].get("cpu_pct_cam"):
        return {"idle_estimate": None, "detector_cap": None}
    cpus = os.cpu_count() or 1
    out: dict[str, Any] = {"idle_estimate": int(cpus * 100 / best["summary"]["cpu_pct_cam"]),
                           "detector_cap": None}
    det = sum(v for k, v in best.get("cpu_by_process", {}).items() if k.startswith("detector/"))
    if det > 0:
        d = best.get("detector", {"processes": 1, "threads": 1})
        lanes = min(cpus, d["processes"] * d["threads"])
        out["detector_cap"] = int(lanes * 100 / (det / best["n_cams"]))
    return out


def verdict_lines(v: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for s, x in v.items():
        if not x["tried"]:
            lines.append(f"{LABELS[s]:<11}: not run")
            continue
        if x["max_sustained"]:
            inf = f", {x['inf_cam_s']:.2f} inferences per camera-second" if x["inf_cam_s"] is not None else ""
            line = (f"{LABELS[s]:<11}: {x['max_sustained']} camera(s) sustained in real time, "
                    f"{x['cpu_pct_cam']:.0f}% of one core per camera ({x['cpu_pct']:.0f}% in all){inf}")
        elif 1 in x["tried"]:
            line = f"{LABELS[s]:<11}: not even 1 camera sustained"
        else:
            line = f"{LABELS[s]:<11}: no N tried was sustained"
        if x["first_failed"] is not None:
            line += f"; not at {x['first_failed']}: {x['why']}"
            if x["untried_between"] and x["max_sustained"]:
                gap = range(x["max_sustained"] + 1, x["first_failed"])
                line += f" ({gap[0] if len(gap) == 1 else f'{gap[0]}..{gap[-1]}'} not tried)"
        else:
            line += f"; sustained at every N tried (up to {max(x['tried'])}): raise --max-cameras to go on"
        line += f"; N run: {', '.join(map(str, x['order']))}"
        lines.append(line)
    est = []
    for s, x in v.items():
        if x.get("idle_estimate"):
            cap = f", its detector thread(s) alone: ~{x['detector_cap']}" if x["detector_cap"] else ""
            est.append(f"{LABELS[s]} ~{x['idle_estimate']} cameras{cap}")
    if est:
        lines.append(f"extrapolated, not measured ({os.cpu_count()} otherwise idle CPUs, simulator "
                     f"elsewhere, CPU per camera as above, perfect scaling): {'; '.join(est)}")
    return lines


def _at_common_n(rows: list[dict[str, Any]], a: str, b: str, *, measured: bool = False
                 ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The runs of systems ``a`` and ``b`` at the largest N both sustained (same profile's rows).

    ``measured``: at the largest N both ran without an error when they sustained none in common
    (memory hardly depends on keeping up; a saturated machine sustains nothing).
    """
    ok = {(r["system"], r["n_cams"]): r for r in rows if r.get("sustained")}
    if measured and not [n for (s, n) in ok if s == a and (b, n) in ok]:
        ok = {(r["system"], r["n_cams"]): r for r in rows
              if not r.get("errors") and r.get("summary", {}).get("pss_mb")}
    common = [n for (s, n) in ok if s == a and (b, n) in ok]
    if not common:
        return None
    n = max(common)
    return ok[(a, n)], ok[(b, n)]


def target_results(rows: list[dict[str, Any]], verdict: dict[str, dict[str, dict[str, Any]]]
                   ) -> list[dict[str, Any]]:
    """Issue 13's targets, each PASS or MISS (or n/a when a run is missing) with its figures."""
    out: list[dict[str, Any]] = []
    for profile, system, want in TARGETS:
        v = verdict.get(profile, {})
        mine, base = v.get(system, {}).get("max_sustained"), v.get("opencv", {}).get("max_sustained")
        ratio = mine / base if mine is not None and base else None
        out.append({"target": f"{profile}: {LABELS[system]} cameras >= {want:g}x the baseline's",
                    "value": ratio, "figures": f"{mine} vs {base} cameras",
                    "result": "n/a" if ratio is None else ("PASS" if ratio >= want else "MISS")})
    for profile in PROFILES:
        prow = [r for r in rows if r.get("profile") == profile]
        pair = _at_common_n(prow, "camfleet-eq", "opencv")
        if profile == "always":
            ratio = (pair[0]["summary"]["cpu_pct_cam"] / pair[1]["summary"]["cpu_pct_cam"]
                     if pair and pair[1]["summary"]["cpu_pct_cam"] else None)
            out.append({"target": f"{profile}: cf equal CPU per camera <= {EQ_CPU_TARGET:g}x the baseline's",
                        "value": ratio,
                        "figures": (f"{pair[0]['summary']['cpu_pct_cam']:.0f}% vs "
                                    f"{pair[1]['summary']['cpu_pct_cam']:.0f}% at {pair[0]['n_cams']} cam"
                                    if pair else "no N both sustained"),
                        "result": "n/a" if ratio is None else ("PASS" if ratio <= EQ_CPU_TARGET else "MISS")})
    out.append(pss_target(rows))
    return out


def pss_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The memory target, once: camfleet's PSS per camera against the loop's at one N both ran.

    camfleet has fixed costs the loop has not (the detector, the fork server), so the ratio falls
    with N: it is judged at the largest N both sustained in one profile (either), else at the largest
    N both ran. The search rarely runs both systems at the same N in ``typical`` (camfleet's counts
    start near twice the loop's), where that left only N = 2.
    """
    pairs = [p for p in (_at_common_n([r for r in rows if r.get("profile") == profile], "camfleet",
                                      "opencv", measured=True) for profile in PROFILES) if p]
    pair = max(pairs, key=lambda p: (bool(p[0].get("sustained") and p[1].get("sustained")), p[0]["n_cams"]),
               default=None)
    ratio = None
    if pair and pair[1]["summary"]["pss_mb"]:
        ratio = pair[0]["summary"]["pss_mb"] / pair[1]["summary"]["pss_mb"]
    return {"target": f"camfleet PSS per camera <= {PSS_TARGET:g}x the baseline's",
            "value": ratio,
            "figures": (f"{pair[0]['summary']['pss_mb'] / pair[0]['n_cams']:.0f} vs "
                        f"{pair[1]['summary']['pss_mb'] / pair[1]['n_cams']:.0f} MiB per camera at "
                        f"{pair[0]['n_cams']} cam ({pair[0]['profile']})"
                        + ("" if pair[0].get("sustained") and pair[1].get("sustained")
                           else " (not sustained there)") if pair else "no N both ran"),
            "result": "n/a" if ratio is None else ("PASS" if ratio <= PSS_TARGET else "MISS")}


def bound_results(rows: list[dict[str, Any]], verdict: dict[str, dict[str, dict[str, Any]]]
                  ) -> list[dict[str, Any]]:
    """What the camera targets could reach at best: camfleet's decode and necessary model runs only.

    Not a measurement of a system but of two of its parts, in this run: per profile, at camfleet's
    largest N sustained, its ingest's CPU per camera (demux + decode of every frame, which any system
    reading the stream pays) plus the model runs that analysing every frame with something in it needs
    (the profile's active fraction x the analysed fps, at the detector's measured CPU ms per image), as
    if the pipeline, the supervisor and the detector's IPC cost nothing. Against the baseline's CPU per
    camera at its own largest N, that gives the most cameras camfleet could fit relative to the loop
    from CPU alone. A target above it needs a cheaper decode or fewer model runs than frames with
    something in them.

    ``bound_with_sim`` adds, on both sides, the simulator's CPU per camera measured in the same rows:
    on this machine the simulated cameras share the cores, so a system that fits more cameras also
    leaves more of the cores to the simulator; that is the most the cameras ratio can reach here.
    """
    out: list[dict[str, Any]] = []
    for profile, active in PROFILES.items():
        v = verdict.get(profile, {})
        prow = [r for r in rows if r.get("profile") == profile and r.get("sustained")]
        best_n = v.get("camfleet", {}).get("max_sustained")
        cf = [r for r in prow if r["system"] == "camfleet" and r["n_cams"] == best_n]
        base = v.get("opencv", {}).get("cpu_pct_cam")
        base_n = v.get("opencv", {}).get("max_sustained")
        loop = [r for r in prow if r["system"] == "opencv" and r["n_cams"] == base_n]
        if not cf or not base or not cf[0].get("cpu_by_process"):
            continue
        r = cf[0]
        n = r["n_cams"]
        kinds: dict[str, float] = {}
        for name, pct in r["cpu_by_process"].items():
            kinds[_kind_of(name)] = kinds.get(_kind_of(name), 0.0) + pct
        det_img_s = r["summary"].get("det_img_s") or 0.0
        if det_img_s <= 0:
            continue
        ms_img = 10 * kinds.get("detector", 0.0) / det_img_s
        decode = kinds.get("ingest", 0.0) / n
        needed = active * DET_FPS
        floor = decode + needed * ms_img / 10
        wants = [want for p, _s, want in TARGETS if p == profile]
        sim_cf = (r["summary"].get("sim_pct") or 0.0) / n
        sim_loop = (loop[0]["summary"].get("sim_pct") or 0.0) / base_n if loop and base_n else None
        with_sim = (base + sim_loop) / (floor + sim_cf) if sim_loop is not None else None
        out.append({"profile": profile, "bound": base / floor, "bound_with_sim": with_sim,
                    "sim_pct_cam": sim_cf, "sim_pct_cam_baseline": sim_loop, "decode_pct_cam": decode,
                    "ms_per_image": ms_img,
                    "inferences_needed": needed, "floor_pct_cam": floor, "baseline_pct_cam": base,
                    "measured_pct_cam": r["summary"]["cpu_pct_cam"], "targets": wants, "n_cams": n})
    return out


def bound_lines(bounds: list[dict[str, Any]]) -> list[str]:
    """One line per profile: the bound of :func:`bound_results` against the targets."""
    return [
        f"{b['profile']}: at best {b['bound']:.2f}x the loop's cameras (targets: "
        f"{', '.join(f'{w:g}x' for w in b['targets'])}): camfleet's decode {b['decode_pct_cam']:.1f}% + "
        f"{b['inferences_needed']:.2f} model runs/cam-s x {b['ms_per_image']:.1f} ms = "
        f"{b['floor_pct_cam']:.1f}% "
        f"of a core per camera (measured in all: {b['measured_pct_cam']:.1f}%) vs the loop's "
        f"{b['baseline_pct_cam']:.1f}%; camfleet at {b['n_cams']} cameras"
        + (f"; with the simulator's share of the same cores ({b['sim_pct_cam']:.2f}% per camera beside "
           f"camfleet, {b['sim_pct_cam_baseline']:.2f}% beside the loop): at best {b['bound_with_sim']:.2f}x"
           if b.get("bound_with_sim") is not None else "")
        for b in bounds
    ]


def _ms_per(pct: float, per_s: float) -> str:
    """CPU milliseconds per item from a CPU% of one core and items per second ('-' without items)."""
    return f"{10 * pct / per_s:.2f}" if per_s > 0 else "-"


def breakdown_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Cost per camera, per run: CPU% and CPU ms per frame of each process kind, PSS per camera.

    CPU time per frame hardly moves with the rest of the machine's load (unlike throughput), so it
    is the figure to compare between runs on a shared machine. camfleet: the ingest per frame read
    from the camera, the pipeline per frame analysed, the detector per image inferred; baseline:
    its one process per frame read. PSS: each kind's processes, divided by the cameras.
    """
    lines = []
    for r in sorted((r for r in rows if r.get("summary", {}).get("cpu_pct_cam") is not None),
                    key=lambda r: (r["profile"], r["system"], r["n_cams"])):
        s, n = r["summary"], r["n_cams"]
        in_fps = s["in_fps_mean"]
        head = f"{LABELS[r['system']]} ({r['profile']}) at {n} cam:"
        total = (f"in all {s['cpu_pct_cam']:.1f}% CPU/cam = {_ms_per(s['cpu_pct_cam'], in_fps)} ms per frame "
                 f"read, PSS {s['pss_mb'] / n:.0f} MiB/cam")
        if not r.get("cpu_by_process"):  # the baseline: one process
            lines.append(f"{head} {total}")
            lines += ["    " + line for line in smaps_lines(r)]
            continue
        kinds: dict[str, float] = {}
        pss: dict[str, float] = {}
        for name, pct in r["cpu_by_process"].items():
            # "cap1/ingest", "cap1/pipeline", "detector/cpu", "forkserver/123", "node threads ..."
            head_, _, tail = name.partition("/")
            kind = head_ if head_ in ("detector", "forkserver") or not tail else tail
            kinds[kind] = kinds.get(kind, 0.0) + pct
            pss[kind] = pss.get(kind, 0.0) + r.get("pss_by_process", {}).get(name, 0.0)
        ing, pip = kinds.get("ingest", 0.0) / n, kinds.get("pipeline", 0.0) / n
        det = kinds.get("detector", 0.0)
        lines.append(
            f"{head} ingest {ing:.1f}% CPU/cam ({_ms_per(ing, in_fps)} ms per frame read), pipeline "
            f"{pip:.1f}%/cam ({_ms_per(pip, s['an_fps_mean'])} ms per frame analysed), detector {det:.1f}% "
            f"in all ({_ms_per(det, s.get('det_img_s') or 0.0)} ms per image), supervisor threads "
            f"{kinds.get('node threads in the bench process', 0):.1f}%; {total}"
        )
        if pss:
            lines.append(
                f"    PSS MiB/cam: ingest {pss.get('ingest', 0) / n:.1f}, "
                f"pipeline {pss.get('pipeline', 0) / n:.1f}, "
                f"detector {pss.get('detector', 0) / n:.1f}, forkserver {pss.get('forkserver', 0) / n:.1f}"
            )
        lines += ["    " + line for line in smaps_lines(r)]
    return lines


def _kind_of(name: str) -> str:
    """'cap1/ingest' -> 'ingest'; 'detector/cpu' -> 'detector'; 'forkserver/123' -> 'forkserver'."""
    head, _, tail = name.partition("/")
    return head if head in ("detector", "forkserver") or not tail else tail


def smaps_lines(r: dict[str, Any]) -> list[str]:
    """PSS per camera by process kind and kind of mapping (heap, libs, shm...), MiB, of one run."""
    n = r["n_cams"]
    rows: dict[str, dict[str, float]] = {}
    if r.get("smaps_by_process"):
        for name, b in r["smaps_by_process"].items():
            acc = rows.setdefault(_kind_of(name), {})
            for k, v in b["pss_mib"].items():
                acc[k] = acc.get(k, 0.0) + v
    elif r.get("smaps"):
        rows["process"] = dict(r["smaps"]["pss_mib"])
    if not rows:
        return []
    out = ["PSS MiB/cam by mapping: " + " ".join(f"{k:>6}" for k in _smaps.KINDS) + "    all"]
    for kind, acc in rows.items():
        out.append(f"  {kind:21} " + " ".join(f"{acc.get(k, 0.0) / n:6.1f}" for k in _smaps.KINDS)
                   + f" {sum(acc.values()) / n:6.1f}")
    return out


# --------------------------------------------------------------------------- main
@dataclass
class Search:
    """One system's search for its largest sustained N, starting from an estimate.

    ``first`` is run first; then ``estimate`` (set from the first run, see :func:`estimate_n`), then
    N steps away from it (+1, +2, +4, ... while sustained; -1, -2, -4, ... while not) and the gap is
    bisected. ``lo`` is the largest N sustained so far (0: none), ``hi`` the smallest N that was not
    (None: none yet); it stops when ``hi == lo + 1``, at ``cap``, or after ``max_probes`` runs. Every
    N it returns lies strictly between ``lo`` and ``hi``, so the verdict (largest sustained below the
    smallest not sustained) is exact whatever order the runs came in.
    """

    first: int
    cap: int
    max_probes: int
    estimate: int | None = None
    lo: int = 0
    hi: int | None = None
    probes: int = 0
    tried: list[int] = field(default_factory=list)
    _step: int = 1
    _phase: str = "up"  # "up"/"down": stepping away from the first run or the estimate; "bisect"

    def next(self) -> int | None:
        """The next N to run, or None when the search is over."""
        top = self.cap if self.hi is None else self.hi - 1  # largest N still worth trying
        if self.probes >= self.max_probes or self.lo >= top:
            return None
        if not self.tried:
            n = self.first
        elif self.estimate is not None and self.estimate not in self.tried and self.lo < self.estimate <= top:
            n = self.estimate
        elif self._phase == "up":
            n = self.lo + self._step
        elif self._phase == "down" and self.hi is not None:
            n = self.hi - self._step
        else:
            n = (self.lo + top + 1) // 2
        return min(max(n, self.lo + 1), top)

    def record(self, n: int, sustained: bool) -> None:
        """Take the result of running ``n``."""
        self.probes += 1
        if len(self.tried) == 0 or n == self.estimate:  # start stepping away from here, by 1
            self._phase, self._step = ("up" if sustained else "down"), 1
        elif self._phase == ("up" if sustained else "down"):
            self._step *= 2  # still on the same side: step further
        else:
            self._phase = "bisect"  # crossed over: the answer lies in the gap
        self.tried.append(n)
        if sustained:
            self.lo = max(self.lo, n)
        else:
            self.hi = n if self.hi is None else min(self.hi, n)


def estimate_n(row: dict[str, Any]) -> int | None:
    """The largest N the machine might sustain, from one run: the CPU per camera it measured.

    :data:`HEADROOM` of all CPUs / (the system's CPU% + the simulator's) per camera; for camfleet
    at most its detector threads' capacity (one core each) / the detector's CPU% per camera too.
    None when the run has no CPU figure (it failed).
    """
    s, n = row.get("summary", {}), row["n_cams"]
    if not s.get("cpu_pct"):
        return None
    cpus = os.cpu_count() or 1
    per_cam = (s["cpu_pct"] + max(0.0, s.get("sim_pct") or 0.0)) / n
    est = HEADROOM * cpus * 100 / per_cam
    det = sum(v for k, v in row.get("cpu_by_process", {}).items() if k.startswith("detector/"))
    if det > 0:
        d = row.get("detector", {"processes": 1, "threads": 1})
        est = min(est, HEADROOM * min(cpus, d["processes"] * d["threads"]) * 100 / (det / n))
    return max(1, int(est))


def _progress(r: dict[str, Any]) -> None:
    sm = r["summary"]
    rates = (f"in {sm['in_fps_min']:.1f} fps, analysed {sm['an_fps_min']:.2f} fps (min), CPU "
             f"{sm['cpu_pct']:.0f}% ({sm['cpu_pct_cam']:.0f}%/cam), sim {sm['sim_pct']:.0f}%, "
             f"other {sm['other_pct']:.0f}%, " if "cpu_pct" in sm else "")
    verdict = "sustained" if r["sustained"] else "NOT sustained: " + r["why"]
    if "estimate" in r:
        verdict += f" (estimate: {r['estimate']} cameras)"
    print(f"  {r['profile']:<7} {LABELS[r['system']]:<11} {r['n_cams']:>2} cam: {rates}{verdict}, "
          f"{r['elapsed_s']:.1f} s",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="N = 2 only, per system and profile; short windows (< 60 s)")
    ap.add_argument("--max-cameras", type=int, default=16, help="largest N tried (default 16)")
    ap.add_argument("--cams", nargs="+", type=int, help="exactly these camera counts (no search order)")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    ap.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES),
                    help="scene profiles (default both): always moving, or objects 25%% of the time")
    ap.add_argument("--warmup", type=float,
                    help="seconds between ready and the window (default 1 with --quick; 5)")
    ap.add_argument("--window", type=float, help="seconds measured per run (default 3 with --quick; 20)")
    ap.add_argument("--detector-processes", type=int, default=1,
                    help="camfleet: detector processes (default 1, as runtime.default)")
    ap.add_argument("--detector-threads", type=int, default=1,
                    help="camfleet: inference threads per detector process (default 1, as runtime.default)")
    ap.add_argument("--sim", choices=("replay", "live"), default="replay",
                    help="simulator: replay clips encoded once (default; ~1%% of a core per camera) or "
                         "render and encode live (~16%%; it shares the CPUs with the systems measured)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-capacity.json"), help="raw results")
    args = ap.parse_args(argv)
    quick = args.quick
    warmup = args.warmup if args.warmup is not None else (1.0 if quick else 5.0)
    window = args.window if args.window is not None else (3.0 if quick else 20.0)
    if not 1 <= args.max_cameras <= 64 or any(not 1 <= n <= 64 for n in args.cams or []):
        ap.error("camera counts must be within 1..64")
    if args.detector_processes < 1 or args.detector_threads < 1:
        ap.error("--detector-processes and --detector-threads must be at least 1")
    systems = [s for s in SYSTEMS if s in args.systems]
    profiles = [p for p in PROFILES if p in args.profiles]
    detector = (args.detector_processes, args.detector_threads)

    from camfleet.detect import default_model_spec
    from camfleet_testing.sim import SimError

    spec = default_model_spec()
    if args.cams:
        search_text = f"{sorted(set(args.cams))} as given"
    elif quick:
        search_text = "2 only"
    else:
        search_text = f"2, then around the estimate from its CPU per camera, at most {args.max_cameras}"
    load_start = os.getloadavg()
    print(
        f"capacity bench: {CAM_W}x{CAM_H} H.264 @ {CAM_FPS:g} fps RTSP cameras, analysed at {DET_FPS:g} fps, "
        f"model {spec.id}; profiles {', '.join(profiles)}; N: {search_text}; warm-up "
        f"{warmup:g} s, window {window:g} s; simulator {args.sim}; {os.cpu_count()} CPUs",
        flush=True,
    )
    if load_start[0] > 0.5:
        print(f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs",
              flush=True)

    # A private shm directory: the node's rings and detector never meet a test's (spawned children inherit).
    shm = Path(tempfile.mkdtemp(prefix="camfleet-bench-capacity-", dir="/dev/shm"))
    os.environ["CAMFLEET_SHM_DIR"] = str(shm)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    interrupted = False
    fatal: str | None = None
    t0 = time.perf_counter()
    sim = None
    try:
        for profile in profiles:
            if args.cams:  # exactly the counts given, every system at each
                plan = {sy: iter(sorted(set(args.cams))) for sy in systems}
                searches: dict[str, Search] = {}
            else:
                searches = {sy: Search(first=min(2, args.max_cameras), cap=args.max_cameras,
                                       max_probes=1 if quick else args.max_cameras) for sy in systems}
            while True:
                if args.cams:
                    wanted = {sy: n for sy in systems if (n := next(plan[sy], None)) is not None}
                else:
                    wanted = {sy: n for sy in systems if (n := searches[sy].next()) is not None}
                if not wanted:
                    break
                for n in sorted(set(wanted.values())):
                    if args.sim == "replay":  # encode what is not cached yet now, never inside a window
                        took = prepare_clips(n, PROFILES[profile], period_s=window)
                        if took > 1.0:
                            print(f"  {profile:<7} encoded the replay clips of {n} camera(s) in {took:.1f} s",
                                  file=sys.stderr, flush=True)
                    # the period is the window: each camera's window holds exactly its active share
                    sim = start_sim(n, PROFILES[profile], period_s=window, mode=args.sim)
                    if args.sim == "live":
                        time.sleep(0.5)  # the feeders and the server settle
                    for sy in (sy for sy in systems if wanted.get(sy) == n):
                        if sy == "opencv":
                            r = run_baseline(ctx, sim, n, warmup, window)
                        else:
                            r = run_camfleet(sim, n, warmup, window, data_dir, detector,
                                             equal_work=sy == "camfleet-eq")
                        r["profile"] = profile
                        rows.append(r)
                        if sy in searches:
                            search = searches[sy]
                            search.record(n, r["sustained"])
                            if search.probes == 1 and (est := estimate_n(r)) is not None:
                                search.estimate = min(est, args.max_cameras)
                                r["estimate"] = search.estimate
                        _progress(r)
                    sim.close()
                    sim = None
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: cleaning up", file=sys.stderr, flush=True)
    except SimError as exc:
        fatal = f"the camera simulator failed: {exc}"
        print(fatal, file=sys.stderr, flush=True)
    finally:
        if sim is not None:
            sim.close()
        _kill_alive([c.pid for c in psutil.Process().children(recursive=True)
                     if c.pid in _STARTED or "_gst_server" in " ".join(_safe_cmdline(c))])
        shutil.rmtree(data_dir, ignore_errors=True)
        shm_left = sorted(p.name for p in shm.iterdir()) if shm.exists() else []
        shutil.rmtree(shm, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)
    elapsed = time.perf_counter() - t0
    load_end = os.getloadavg()

    v = {p: verdicts([r for r in rows if r["profile"] == p], systems) for p in profiles}
    targets = target_results(rows, v)
    for p in profiles:
        prow = [r for r in rows if r["profile"] == p]
        print()
        print(f"profile {p!r}: cameras sustained in real time ({CAM_W}x{CAM_H} @ {CAM_FPS:g} fps in, "
              f"{DET_FPS:g} fps analysed); in = frames read/s per camera, an = frames analysed/s per camera "
              "(min over cameras), inf/cs = inferences per camera-second, CPU% of one core")
        print(side_by_side(prow, systems))
        print()
        for line in verdict_lines(v[p]):
            print(line)
    print()
    print("cost per camera (CPU% of one core; CPU ms per frame; PSS):")
    for line in breakdown_lines(rows):
        print(f"  {line}")
    print()
    print("targets (issue 13; ratios measured in this run):")
    for t in targets:
        val = f"{t['value']:.2f}x" if t["value"] is not None else "-"
        print(f"  {t['result']:<4} {t['target']}: {val} ({t['figures']})")
    print()
    bounds = bound_results(rows, v)
    if bounds:
        print()
        print("at best, from CPU alone (camfleet's decode and the model runs the profile needs, "
              "nothing else; see bound_results):")
        for line in bound_lines(bounds):
            print(f"  {line}")
    print()
    print(detail_table(rows))
    other = [r["summary"]["other_pct"] for r in rows if "other_pct" in r["summary"]]
    if other and max(other) > 25:
        print(f"note: other work used {min(other):.0f}-{max(other):.0f}% CPU (200% = {os.cpu_count()} "
              "cores busy) during the windows: the results measure what that left of the machine")
    print()
    print(f"total {elapsed:.1f} s; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the "
          "end. Columns and method:")
    for key, text in METHOD.items():
        print(f"  {key}: {text}")
    errors = [(r["system"], r["n_cams"], e) for r in rows for e in r.get("errors", [])]
    if fatal:
        print(f"\nstopped early: {fatal}")
    if errors:
        print(f"\n{len(errors)} error(s):")
        for s, n, e in errors:
            print(f"  {LABELS[s]} {n} cam: {_err_line(e)}")
    if shm_left:
        print(f"\nremoved {len(shm_left)} leftover shm file(s): {', '.join(shm_left)}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "argv": sys.argv,
            "quick": quick,
            "interrupted": interrupted,
            "fatal": fatal,
            "search": search_text,
            "sim": args.sim,
            "profiles": {p: PROFILES[p] for p in profiles},
            "warmup_s": warmup,
            "window_s": window,
            "elapsed_s": elapsed,
            "python": sys.version,
            "numpy": np.__version__,
            "opencv": dist_version("opencv-python-headless"),
            "av": dist_version("av"),
            "ai_edge_litert": dist_version("ai-edge-litert"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_gb": psutil.virtual_memory().total / 2**30,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "model": {"id": spec.id, "sha256": spec.sha256, "path": str(spec.path)},
            "cameras": {"width": CAM_W, "height": CAM_H, "fps": CAM_FPS, "kbps": CAM_KBPS, "gop": CAM_GOP},
            "detect": {"width": DET_W, "height": DET_H, "fps": DET_FPS, "sustain_fraction": SUSTAIN},
            "camfleet_detector": {"processes": detector[0], "threads": detector[1]},
            "shm_leftovers_removed": shm_left,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": METHOD,
        },
        "verdicts": v,
        "targets": targets,
        "bounds": bounds,
        "runs": rows,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    if interrupted:
        return 130
    return 1 if errors or fatal else 0


def _safe_cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


if __name__ == "__main__":
    sys.exit(main())
