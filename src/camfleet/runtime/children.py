"""The processes a node runs per camera: ingest, pipeline and recorder entry points.

:func:`run_child` is every camera process's target: before anything else it
arranges to die with the supervisor, to stop on SIGTERM, to log through the
supervisor and to beat in its heartbeat slot, then runs the loop of the
process's kind (:meth:`camfleet.runtime.kinds.CameraKind.main`, which calls
:func:`run_ingest`, :func:`run_pipeline` or :func:`run_recorder`). These
functions run in child processes started from the node (forkserver context,
this module preloaded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2

from camfleet import framebus
from camfleet.config import Config
from camfleet.detect.protocol import MAX_INFLIGHT
from camfleet.detect.service import DetectorClient, DetectorFailed
from camfleet.events import OutboxProducer
from camfleet.framebus import PixelFormat
from camfleet.ingest import IngestConfig, IngestWorker, OutputSpec, SourceOptions, TlsOptions
from camfleet.ingest.status import IngestState
from camfleet.pipeline import EventUpdate, FrameContext, Pipeline
from camfleet.pipeline.build import camera_env, camera_pipeline, element_specs
from camfleet.pipeline.window import FrameWindow
from camfleet.procutil import die_with_parent
from camfleet.vocabulary import ActivityMessage, MotionSpan, OutboxMessage

from . import heartbeat as hb
from .health import EXIT_ENDED
from .lease import EXIT_FENCED, watch_lease
from .protocols import ConfigInbox

if TYPE_CHECKING:
    from .kinds import CameraKind

log = logging.getLogger("camfleet.runtime")

ANSWER_POLL_S = 0.04
"""Seconds a pipeline with room for another frame waits for its oldest detector answer before it
looks for a new frame again (an answer ends the wait at once; a new frame waits at most this)."""
MOTION_QUIET_S = 2.0
"""Seconds without motion that end a motion span (sent to the node for recording retention)."""

MOTION_EXTEND_S = 5.0
"""Seconds between two journal entries that extend a motion span still going on.

Retention keeps an open span's footage until now; this bounds how stale its stored end is
when the pipeline dies (the restart closes it, see ``Journal.close_open_spans``)."""


def camfleet_env() -> dict[str, str]:
    """The ``CAMFLEET_*`` environment of this process (children forked from a forkserver need it)."""
    return {k: v for k, v in os.environ.items() if k.startswith("CAMFLEET_")}


@dataclass
class ChildSpec:
    """Everything a camera process is started with (pickled once, at start).

    ``kind`` is the process kind (its class runs the loop). ``outbox`` is the
    node's outbox journal (``<data_dir>/outbox.db``) the process appends its
    events, activity spans and segments to (None: they go nowhere);
    ``control`` carries new configurations to a running pipeline.
    ``log_address`` is where the node's log router listens. ``detectors``
    maps a configured detector name to (the detector process serving this
    camera, the model input size in pixels). ``lease``: the node's fleet
    lease file (:mod:`camfleet.runtime.lease`) the process stops by when it
    lapses; None without a fleet.
    """

    camera: str
    kind: CameraKind
    config: Config
    health_path: str
    slot: int
    parent_pid: int
    outbox: str | None = None
    control: ConfigInbox | None = None
    log_address: str | None = None
    detectors: dict[str, tuple[str, tuple[int, int]]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=camfleet_env)
    lease: str | None = None


@dataclass
class ChildProcess:
    """What a camera process's loop gets: its stop event (set by SIGTERM) and its heartbeat slot.

    ``fenced`` is set when the node's fleet lease lapsed (the stop event is set with it).
    """

    stop: threading.Event
    beat: hb.Heartbeat
    fenced: threading.Event = field(default_factory=threading.Event)


def _setup(spec: ChildSpec) -> ChildProcess:
    die_with_parent(spec.parent_pid)
    # the forkserver's environment is the one it started with, not the supervisor's now
    for key in [k for k in os.environ if k.startswith("CAMFLEET_")]:
        del os.environ[key]
    os.environ.update(spec.env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Parallelism comes from the cameras (a process each): OpenCV's own pool on a 640x360 picture
    # costs more CPU in hand-offs than it saves, and competes with the other cameras for the cores.
    cv2.setNumThreads(1)
    stop = threading.Event()

    def on_term(*_: object) -> None:
        if stop.is_set():  # the second SIGTERM: the supervisor lost patience, leave now
            raise SystemExit(143)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    if spec.log_address is not None:
        from .logfiles import child_logging  # noqa: PLC0415 - optional until logging is configured

        child_logging(spec.log_address, spec.camera, spec.kind.name, spec.config.logging.level)
    child = ChildProcess(stop, hb.Heartbeat(spec.health_path, spec.slot))
    if spec.lease is not None:  # run by a fleet agent: stop by ourselves when its lease lapses
        watch_lease(spec.lease, stop, child.fenced, f"camera {spec.camera} {spec.kind.name} process")
    return child


def _run_beating(child: ChildProcess, run: Callable[[threading.Event], None],
                 beat_loop: Callable[[], None]) -> None:
    """``run(stop)`` in this thread while ``beat_loop`` judges its progress and beats from another."""
    beater = threading.Thread(target=beat_loop, name="heartbeat", daemon=True)
    beater.start()
    try:
        run(child.stop)
    finally:
        child.stop.set()
        beater.join(1.0)


def run_child(spec: ChildSpec) -> None:
    """Entry point of every camera process: set up, then run the loop of ``spec.kind``."""
    child = _setup(spec)
    try:
        spec.kind.main(spec, child)
    except BaseException as exc:
        if not isinstance(exc, SystemExit):  # the traceback belongs in the camera's log, not only stderr
            log.critical("%s process of camera %s crashed", spec.kind.name, spec.camera, exc_info=True)
        raise
    if child.fenced.is_set():  # the supervisor must tell a fenced stop from a crash or an end
        raise SystemExit(EXIT_FENCED)


# --------------------------------------------------------------------------- ingest


def ingest_config(config: Config, camera: str) -> IngestConfig:
    """How ``camera``'s ingest process reads its detect source."""
    cam = config.camera(camera)
    src = cam.detect_source
    opts = SourceOptions(
        transport=src.transport or "tcp",
        open_timeout=src.open_timeout or 10.0,
        stall_timeout=src.stall_timeout or 10.0,
        loop=src.loop,
        realtime=src.realtime,
        hwaccel=src.hwaccel,
        tls=TlsOptions(verify=src.tls.verify,
                       ca_file=str(config.resolve_path(src.tls.ca_file)) if src.tls.ca_file else None),
        corrupt_degraded_per_min=src.corrupt_degraded_per_min,
    )
    out = OutputSpec(PixelFormat.YUV420P, cam.detect.width, cam.detect.height, cam.detect.fps)
    return IngestConfig(url=src.url, key=camera, source=opts, output=out)


def run_ingest(spec: ChildSpec, child: ChildProcess) -> None:
    """The ingest process's loop: decode the detect source into the camera's rings, beating."""
    cfg = ingest_config(spec.config, spec.camera)
    worker = IngestWorker(cfg)
    # A loop stuck inside FFmpeg stops the beats: streaming without frames, or connecting, for longer
    # than the worker's own timeouts allow means the loop no longer runs.
    stuck_s = cfg.source.open_timeout + 2 * cfg.source.stall_timeout + 5.0

    def beat_loop() -> None:
        last_frames, last_progress = -1, time.monotonic()
        while not child.stop.wait(0.25):
            st = worker.status()
            now = time.monotonic()
            if st.frames != last_frames or st.state in (IngestState.BACKOFF, IngestState.STOPPED,
                                                        IngestState.ENDED):
                last_frames, last_progress = st.frames, now
            if now - last_progress > stuck_s:
                continue  # no beat: the supervisor declares the process unresponsive
            child.beat.counters[hb.FRAMES] = st.frames
            child.beat.counters[hb.PACKETS] = st.packets
            child.beat.counters[hb.EXTRA] = st.decoded
            child.beat.counters[hb.ERRORS] = st.corrupt_frames + st.rejected_packets
            if st.state == IngestState.STREAMING:
                if st.degraded:
                    child.beat.beat(hb.DEGRADED, st.degraded)
                else:
                    child.beat.beat(hb.OK)
            else:
                why = f"{st.state.value}" + (f": {st.last_error}" if st.last_error else "")
                child.beat.beat(hb.DEGRADED, why)

    _run_beating(child, worker.run, beat_loop)
    if worker.ended:  # the supervisor must not play the file again (every event would be reported twice)
        raise SystemExit(EXIT_ENDED)


# --------------------------------------------------------------------------- pipeline


class _Activity:
    """Turns per-frame motion into spans and journals them for recording retention.

    A span is journalled ``open`` when motion starts (so retention keeps its footage while
    it lasts, and a killed pipeline's span is closed at its restart), again with a later
    end every :data:`MOTION_EXTEND_S` seconds, and closed after :data:`MOTION_QUIET_S`
    seconds without motion or when the pipeline stops. Times are epoch seconds.
    """

    def __init__(self, camera: str, outbox: OutboxProducer | None) -> None:
        self.camera = camera
        self.outbox = outbox
        self.start: float | None = None
        self.last: float = 0.0
        self._journalled = 0.0  # the end last journalled for the open span

    def frame(self, moving: bool, t: float) -> None:
        """Account one frame captured at ``t``; ``moving``: the motion element saw motion."""
        if moving:
            if self.start is None:
                self.start = t
                self._put(t, is_open=True)
            elif t - self._journalled >= MOTION_EXTEND_S:
                self._put(t, is_open=True)
            self.last = t
        elif self.start is not None and t - self.last > MOTION_QUIET_S:
            self.flush()

    def flush(self) -> None:
        """Close the span going on, if any, at the last frame with motion."""
        if self.start is not None:
            self._put(self.last, is_open=False)
        self.start = None

    def _put(self, end: float, *, is_open: bool) -> None:
        assert self.start is not None
        self._journalled = end
        if self.outbox is not None:
            self.outbox.put(ActivityMessage(MotionSpan(self.camera, "motion", self.start, end,
                                                       open=is_open)))


def run_pipeline(spec: ChildSpec, child: ChildProcess) -> None:
    """The pipeline process's loop: run the elements on the newest frames, send events, beat."""
    camera, config = spec.camera, spec.config
    clients = {
        name: DetectorClient(instance, camera, size) for name, (instance, size) in spec.detectors.items()
    }
    services = {"detectors": clients}
    pipeline = camera_pipeline(config, camera, services=services, publish_meta=True)
    outbox = OutboxProducer(spec.outbox, fsync=config.outbox.fsync) if spec.outbox else None
    if outbox is not None:  # this camera's previous pipeline may have been killed mid-event
        outbox.close_open_events(camera)
        outbox.close_open_spans(camera)  # ... or mid-motion
    activity = _Activity(camera, outbox)
    counters = child.beat.counters
    last_seq: int | None = None
    last_frame_at = time.monotonic()
    degraded = ""
    window = FrameWindow(pipeline)  # frames whose detector answers are still out, in frame order

    def finished(ctx: FrameContext) -> None:
        nonlocal last_frame_at, degraded
        degraded = ""
        last_frame_at = time.monotonic()
        counters[hb.FRAMES] += 1
        counters[hb.DET_REQUESTS] = sum(c.requests for c in clients.values())
        counters[hb.INFER_MS] = sum(c.infer_ms_total for c in clients.values())
        if ctx.capture_ns:
            counters[hb.LAG_MS] = max(time.time_ns() - ctx.capture_ns, 0) / 1e6
        t = ctx.capture_ns / 1e9 if ctx.capture_ns else time.time()
        activity.frame(bool(ctx.motion), t)
        _send_events(outbox, ctx.events, ctx.seen)
        child.beat.beat(hb.OK)

    pipeline.start()
    child.beat.beat(hb.DEGRADED, "waiting for frames")
    try:
        while not child.stop.is_set():
            try:
                # one lease per frame in the window: the next frame is taken only when there is room
                with framebus.subscribe(camera, mode="latest", name="pipeline", connect_timeout=0.5,
                                        max_held=MAX_INFLIGHT) as sub:
                    while not child.stop.is_set():
                        _apply_updates(spec, pipeline, services, child.beat)
                        try:
                            for ctx in window.finish_ready():  # leaves room for one more frame
                                finished(ctx)
                            try:
                                # with frames in the window, take a newer frame only if one is there now;
                                # else finish the oldest at once (its latency is the detector's)
                                frame = sub.next(timeout=0.0 if len(window) else 0.5)
                            except framebus.FrameTimeout:
                                if len(window):
                                    # room for another frame: wait for the oldest answer only a little,
                                    # then look for a new frame; blocking here until the answer came
                                    # held one frame out per round trip, and above 1 / fps of detector
                                    # latency (a busy node) the camera fell behind its analysed rate
                                    if window.full or window.wait_oldest(ANSWER_POLL_S):
                                        finished(window.finish_oldest())
                                    continue
                                if time.monotonic() - last_frame_at > 2.0:
                                    degraded = "no frames from ingest"
                                child.beat.beat(hb.DEGRADED if degraded else hb.OK, degraded)
                                continue
                            if last_seq is not None and frame.seq > last_seq + 1:
                                counters[hb.SKIPPED] += frame.seq - last_seq - 1
                            last_seq = frame.seq
                            window.begin(frame)
                        except DetectorFailed as exc:
                            degraded = str(exc)
                            counters[hb.ERRORS] += 1
                            log.warning("camera %s: %s", camera, exc)
                            child.beat.beat(hb.DEGRADED, degraded)
                            continue
            except (framebus.PublisherGone, framebus.NotFound):
                window.drop()
                last_seq = None  # the ingest process restarts or re-creates the ring
                child.beat.beat(hb.DEGRADED, "waiting for the ingest process")
                child.stop.wait(0.1)
    finally:
        window.drop()
        activity.flush()
        pipeline.stop()
        for client in clients.values():
            client.close()
        if outbox is not None:  # the events element forgets its open events: end them now
            outbox.close_open_events(camera)
            outbox.close()


def _send_events(outbox: OutboxProducer | None, events: list[object], seen: dict[str, float]) -> None:
    """Journal what one frame produced in one transaction (with the open events' last sighting)."""
    if outbox is None:
        return
    messages: list[OutboxMessage] = []
    for update in events:
        if not isinstance(update, EventUpdate):
            continue  # plugin elements' own notes stay in the process
        m = update.message()
        messages.append(m)
        if m.type == "end" and m.event.end is not None:
            messages.append(ActivityMessage(MotionSpan(m.event.camera, "event", m.event.start, m.event.end)))
    outbox.append(messages, seen)


def _apply_updates(spec: ChildSpec, pipeline: Pipeline, services: dict[str, Any], beat: hb.Heartbeat) -> None:
    if spec.control is None:
        return
    config: Config | None = None
    with contextlib.suppress(queue.Empty):
        while True:
            config = spec.control.get_nowait()  # only the newest matters
    if config is None:
        return
    if pipeline.update(element_specs(config, spec.camera), camera_env(config, spec.camera, services)):
        spec.config = config
        beat.counters[hb.EXTRA] += 1
        log.info("camera %s: pipeline settings updated in place", spec.camera)
    else:  # the node restarts the pipeline when elements change; this is a safety net
        log.warning("camera %s: pipeline elements changed; restarting", spec.camera)
        os._exit(3)


# --------------------------------------------------------------------------- recorder


def run_recorder(spec: ChildSpec, child: ChildProcess) -> None:
    """The recorder process's loop: write the camera's packets into segments, beating."""
    from camfleet.recording.recorder import Recorder  # noqa: PLC0415 - only nodes that record need it

    cam = spec.config.camera(spec.camera)
    outbox = OutboxProducer(spec.outbox, fsync=spec.config.outbox.fsync) if spec.outbox else None
    # a transcoded recording is encoded from the frame ring: the detect stream's size and rate
    recorder = Recorder(spec.camera, cam.record, spec.config.recordings_path, outbox, fps=cam.detect.fps)
    # The recorder writes what ingest publishes: no packets for a while means a stuck loop or no input.
    quiet_s = 3 * cam.record.segment_seconds + 10.0

    def beat_loop() -> None:
        last, progress = -1, time.monotonic()
        while not child.stop.wait(0.5):
            st = recorder.stats
            now = time.monotonic()
            if st.packets != last:
                last, progress = st.packets, now
            child.beat.counters[hb.FRAMES] = st.packets
            child.beat.counters[hb.ERRORS] = st.errors
            child.beat.counters[hb.EXTRA] = st.segments
            problem = recorder.problem
            if problem is not None:  # alive but not recording: never "healthy"
                child.beat.beat(hb.DEGRADED, problem)
            elif now - progress > quiet_s:
                child.beat.beat(hb.DEGRADED, f"no packets for {now - progress:.0f} s")
            else:
                child.beat.beat(hb.OK)

    try:
        _run_beating(child, recorder.run, beat_loop)
    finally:
        if outbox is not None:
            outbox.close()
