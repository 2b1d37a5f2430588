"""The live overlay's metadata (pipeline.meta) and the event paths (pipeline.paths), without a node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camfleet import framebus
from camfleet.framebus import PixelFormat
from camfleet.pipeline.context import Box, FrameContext, TrackedObject
from camfleet.pipeline.events import EventType, EventUpdate, ObjectEvent
from camfleet.pipeline.meta import MAX_OBJECTS, MetaPublisher, frame_record, meta_ring_key
from camfleet.pipeline.paths import MAX_POINTS, ObjectPaths, PathEventUpdate

pytestmark = pytest.mark.unit


def _ctx(seq: int, tracks: list[TrackedObject], motion: list[Box] | None = None) -> FrameContext:
    return FrameContext(camera="cam1", seq=seq, pts=seq * 9000,
                        capture_ns=1_700_000_000_000_000_000 + seq * 10**8,
                        width=200, height=100, pixel_format=PixelFormat.GRAY,
                        image=np.zeros((100, 200), np.uint8), motion=motion or [], tracks=tracks)


def _track(tid: int, box: Box, ended: bool = False) -> TrackedObject:
    return TrackedObject(track_id=tid, label="person", score=0.87654, box=box, first_ns=0, last_ns=0,
                         ended=ended,
                         zones={"b", "a"})


def test_ring_keys_are_valid_and_distinct() -> None:
    assert meta_ring_key("cam1") == "mt-cam1"
    long1, long2 = "x" * 62 + "1", "x" * 62 + "2"
    k1, k2 = meta_ring_key(long1), meta_ring_key(long2)
    assert len(k1) <= 63 and len(k2) <= 63 and k1 != k2


def test_frame_record_normalises_clamps_and_drops_ended_tracks() -> None:
    tracks = [_track(1, Box(20, 10, 120, 90)), _track(2, Box(-10, -5, 250, 130)),
              _track(3, Box(0, 0, 1, 1), True)]
    rec = frame_record(_ctx(7, tracks, [Box(0, 0, 100, 50)]))
    assert (rec["seq"], rec["pts"], rec["w"], rec["h"]) == (7, 63000, 200, 100)
    assert rec["t"] == pytest.approx(1_700_000_000.7)
    assert [o["id"] for o in rec["objects"]] == [1, 2]
    assert rec["objects"][0] == {"id": 1, "label": "person", "score": 0.877, "box": [0.1, 0.1, 0.6, 0.9],
                                 "stationary": False, "zones": ["a", "b"]}
    assert rec["objects"][1]["box"] == [0.0, 0.0, 1.0, 1.0]
    assert rec["motion"] == [[0.0, 0.0, 0.5, 0.5]]
    many = frame_record(_ctx(8, [_track(i, Box(0, 0, 10, 10)) for i in range(MAX_OBJECTS + 50)]))
    assert len(many["objects"]) == MAX_OBJECTS
    assert len(json.dumps(many)) < 0.25 * 256 * 1024  # a full record fits the ring's packet limit


def test_publisher_to_subscriber(shm_dir: Path) -> None:
    pub = MetaPublisher("cam1")
    try:
        with framebus.subscribe_packets(meta_ring_key("cam1")) as sub:
            for seq in (1, 2):
                pub.publish(_ctx(seq, [_track(seq, Box(20, 10, 120, 90))]))
            got = [json.loads(sub.next(timeout=2).data) for _ in range(2)]
        assert [r["seq"] for r in got] == [1, 2] and got[1]["objects"][0]["id"] == 2
        # a second publisher on the key of a live one is refused: the pipeline goes on without an overlay
        other = MetaPublisher("cam1")
        other.publish(_ctx(3, []))  # a no-op, never an exception
        other.close()
    finally:
        pub.close()


def test_paths_are_bounded_and_reach_the_event_message() -> None:
    paths = ObjectPaths()
    event = ObjectEvent(event_id="e1", camera="cam1", label="person", track_id=5, start_ns=10**18)
    for i in range(300):
        ctx = _ctx(i, [_track(5, Box(i % 190, 0, i % 190 + 10, 50 + i % 40))])
        if i in (0, 299):
            ctx.events.append(EventUpdate(EventType.START if i == 0 else EventType.UPDATE, event))
        paths.update(ctx)
        if i == 0:
            first = ctx.events[0]
            assert isinstance(first, PathEventUpdate) and len(first.path) == 1
    last = ctx.events[0]
    assert isinstance(last, PathEventUpdate)
    msg = last.message()
    path = msg.event.data["path"]
    assert 2 <= len(path) <= MAX_POINTS
    assert path[0][1:] == [0.025, 0.5]  # the first sighting is kept: bottom centre, normalised
    assert all(0 <= p[1] <= 1 and 0 <= p[2] <= 1 for p in path)
    assert [p[0] for p in path] == sorted(p[0] for p in path)
    # a still object adds no points; an ended track is forgotten
    still = ObjectPaths()
    for i in range(10):
        still.update(_ctx(i, [_track(1, Box(10, 10, 20, 20))]))
    ctx = _ctx(11, [_track(1, Box(10, 10, 20, 20), ended=True)])
    ctx.events.append(EventUpdate(EventType.END, ObjectEvent(event_id="e2", camera="cam1", label="person",
                                                              track_id=1, start_ns=10**18)))
    still.update(ctx)
    assert len(ctx.events[0].path) == 1  # type: ignore[attr-defined]
    assert still._tracks == {} and still._events == {}


def test_an_event_that_outlives_its_track_keeps_the_tracks_path() -> None:
    paths = ObjectPaths()
    event = ObjectEvent(event_id="e1", camera="cam1", label="person", track_id=1, start_ns=10**18)
    ctx = _ctx(0, [_track(1, Box(0, 0, 10, 50))])
    ctx.events.append(EventUpdate(EventType.START, event))
    paths.update(ctx)
    paths.update(_ctx(1, [_track(1, Box(40, 0, 50, 50))]))
    paths.update(_ctx(2, [_track(1, Box(80, 0, 90, 50), ended=True)]))
    paths.update(_ctx(3, []))  # the events element waits reopen_s for the object
    ctx = _ctx(4, [])
    ctx.events.append(EventUpdate(EventType.END, event))
    paths.update(ctx)
    assert [p[1] for p in ctx.events[0].path] == [0.025, 0.225, 0.425]  # type: ignore[attr-defined]
    assert paths._events == {} and paths._tracks == {}
