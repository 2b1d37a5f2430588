"""The pipeline with the real default model behind the shared detector service."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camfleet.detect.models import default_model_spec
from camfleet.detect.service import DetectorClient, DetectorFailed, DetectorSettings
from camfleet.framebus import FrameFormat, FramePublisher, PixelFormat, subscribe
from camfleet.ingest.scene import Scene
from camfleet.pipeline import EventType, EventUpdate, FrameContext, Pipeline, PipelineEnv, ZoneChange
from camfleet.pipeline.window import FrameWindow
from camfleet.runtime.detectors import DetectorManager
from tests.support.detect_helpers import WAIT

pytestmark = pytest.mark.process

W, H, FPS = 640, 360, 5


@pytest.fixture
def detector() -> Iterator[DetectorClient]:
    manager = DetectorManager(DetectorSettings(name="pipe", model=default_model_spec(), threads=2))
    manager.start()
    client = DetectorClient("pipe", "cam", (300, 300))
    try:
        yield client
    finally:
        client.close()
        manager.stop()


def ctx_for(image: object, i: int) -> FrameContext:
    return FrameContext(camera="cam", seq=i + 1, pts=i, capture_ns=int(1e12 + i * 1e9 / FPS),
                        width=W, height=H, pixel_format=PixelFormat.YUV420P, image=image)  # type: ignore[arg-type]


def pipeline(tmp_path: Path, detector: DetectorClient) -> Pipeline:
    env = PipelineEnv(
        camera="cam", data_dir=tmp_path, services={"detectors": {"cpu": detector}},
        zones={"left": {"points": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], "labels": ["person"]}},
    )
    return Pipeline(
        [("motion", {}),
         ("detect", {"labels": ["person"], "min_score": 0.5}),
         ("track", {"fps": FPS, "max_disappeared_s": 1.5}),
         ("zones", {}),
         ("events", {"min_frames": 3}),
         ("snapshot", {})],
        env,
    )


def test_static_scene_sends_no_detector_request(tmp_path: Path, detector: DetectorClient) -> None:
    still = Scene(width=W, height=H, seed=0, objects=("person",)).render_i420(10)
    p = pipeline(tmp_path, detector)
    for i in range(30):
        p.process(ctx_for(still, i))
    assert p.elements[1].requests == 0  # type: ignore[attr-defined]


def test_person_crossing_yields_exactly_one_person_event(tmp_path: Path, detector: DetectorClient) -> None:
    scene = Scene(width=W, height=H, seed=0, objects=("person",))
    empty = scene._bg_i420  # the same street with nobody on it
    p = pipeline(tmp_path, detector)
    updates: list[EventUpdate] = []
    zones = []
    track_ids = set()
    for i in range(60):  # a person walks for 8 s (40 frames), then the street is empty
        ctx = p.process(ctx_for(scene.render_i420(i) if i < 40 else empty, i))
        updates += [u for u in ctx.events if isinstance(u, EventUpdate)]
        zones += [(z.zone, z.change) for z in ctx.zone_events]
        track_ids |= {t.track_id for t in ctx.tracks if t.label == "person"}
    detect = p.elements[1]
    assert detect.requests > 10  # type: ignore[attr-defined]
    starts = [u for u in updates if u.type == EventType.START]
    ends = [u for u in updates if u.type == EventType.END]
    assert len(starts) == 1 and len(ends) == 1, [(u.type, u.event.track_id) for u in updates]
    assert len(track_ids) == 1, track_ids
    event = ends[0].event
    assert event.label == "person" and event.top_score > 0.5
    assert event.end_ns is not None and 5 <= (event.end_ns - event.start_ns) / 1e9 <= 8.5
    assert ("left", ZoneChange.ENTER) in zones and ("left", ZoneChange.EXIT) in zones
    assert event.zones == ["left"]
    assert event.snapshot is not None
    with Image.open(event.snapshot) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (W, H)


def test_two_frames_in_flight_give_the_same_events_in_frame_order(
    tmp_path: Path, detector: DetectorClient
) -> None:
    """The person crossing again, through a real frame ring and a FrameWindow that always keeps the
    next frame's request out before the previous answer is applied: the same one event, one track."""
    scene = Scene(width=W, height=H, seed=0, objects=("person",))
    empty = scene._bg_i420
    p = pipeline(tmp_path, detector)
    assert p.inflight == 2  # the detect element's default
    window = FrameWindow(p)
    updates: list[EventUpdate] = []
    track_ids: set[int] = set()
    seqs: list[int] = []
    most_inflight = 0

    def finished(ctx: FrameContext) -> None:
        seqs.append(ctx.seq)
        updates.extend(u for u in ctx.events if isinstance(u, EventUpdate))
        track_ids.update(t.track_id for t in ctx.tracks if t.label == "person")

    fmt = FrameFormat.packed_format(W, H, "yuv420p")
    with FramePublisher("cam", fmt, slots=8) as pub, \
            subscribe("cam", mode="sequential", name="pipeline", max_held=2) as sub:
        for i in range(60):
            image = scene.render_i420(i) if i < 40 else empty
            pub.publish(image, pts=i, capture_ns=int(1e12 + i * 1e9 / FPS))
            if window.full:
                finished(window.finish_oldest())
            window.begin(sub.next(timeout=5))
            most_inflight = max(most_inflight, detector.inflight)
        while len(window):
            finished(window.finish_oldest())
    assert most_inflight == 2  # requests of two frames were out at once
    assert seqs == sorted(seqs) and len(seqs) == 60  # every frame finished once, in order
    starts = [u for u in updates if u.type == EventType.START]
    ends = [u for u in updates if u.type == EventType.END]
    assert len(starts) == 1 and len(ends) == 1, [(u.type, u.event.track_id) for u in updates]
    assert len(track_ids) == 1, track_ids
    assert ends[0].event.label == "person" and ends[0].event.zones == ["left"]


def test_a_detector_killed_with_two_frames_in_flight_drops_both_and_the_window_recovers(
    tmp_path: Path,
) -> None:
    settings = DetectorSettings(name="mark", model=default_model_spec(), workers=2,
                                factory="tests.support.detect_helpers:marker_runtime")
    manager = DetectorManager(settings, check_s=0.1)
    manager.start()
    client = DetectorClient("mark", "cam", (300, 300))
    env = PipelineEnv(camera="cam", data_dir=tmp_path, services={"detectors": {"cpu": client}})
    p = Pipeline([("detect", {"mode": "frame", "min_score": 0.1})], env)
    window = FrameWindow(p)
    # uniform RGB frames: every crop's first pixel is the frame's colour, which MarkerRuntime reads
    held = np.zeros((H, W, 3), np.uint8)
    held[...] = (0, 100, WAIT)  # its worker holds it until a RELEASE image comes: pending at the kill
    plain = np.zeros((H, W, 3), np.uint8)
    plain[...] = (0, 100, 0)
    try:
        with FramePublisher("cam", FrameFormat.packed_format(W, H, "rgb24"), slots=8) as pub, \
                subscribe("cam", mode="sequential", name="pipeline", max_held=2) as sub:
            for i in range(2):
                pub.publish(held, pts=i)
                window.begin(sub.next(timeout=5))
            assert len(window) == 2 and client.inflight == 2
            pid = manager.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            failures = 0
            while len(window):
                try:
                    window.finish_oldest()
                except DetectorFailed:
                    failures += 1
            assert failures == 2 and sub.held == 0  # both frames dropped, their leases released
            deadline = time.monotonic() + 60  # a restart on a loaded 2-core machine can take long
            while True:  # the supervisor restarts the detector; the window works again
                pub.publish(plain, pts=99)
                try:
                    window.begin(sub.next(timeout=5))
                    ctx = window.finish_oldest()
                    break
                except DetectorFailed:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)  # the restart belongs to the manager's thread: nothing to wait on
            assert [d.label for d in ctx.detections] == ["person"] and sub.held == 0
    finally:
        client.close()
        manager.stop()
