"""One object = one event: the confirmation rule, re-opening an ending event, re-identification
of lost tracks, and the tracking metrics the benchmark reports (pure logic, no detector)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camfleet.framebus import PixelFormat
from camfleet.pipeline import Box, Detection, EventType, EventUpdate, FrameContext, Pipeline, PipelineEnv
from camfleet.pipeline.context import TrackedObject
from camfleet.pipeline.events import EventsConfig, EventsElement, confirmed
from camfleet.pipeline.track import edge_velocity, left_frame, reid_cost
from camfleet_testing.mot import FrameBoxes, Sequence_, summarise

pytestmark = pytest.mark.unit

W, H, FPS = 640, 360, 5
T0 = 1_800_000_000 * 10**9
IMAGE = np.zeros((H * 3 // 2, W), np.uint8)


def ctx_at(i: int) -> FrameContext:
    return FrameContext(camera="cam", seq=i + 1, pts=i, capture_ns=T0 + i * 10**9 // FPS,
                        width=W, height=H, pixel_format=PixelFormat.YUV420P, image=IMAGE)


BOX = Box(100, 100, 180, 260)


def obj(track_id: int, i: int, first: int, scores: list[float], box: Box = BOX,
        label: str = "person", ended: bool = False, last: int | None = None) -> TrackedObject:
    """Track ``track_id`` as the track element reports it at frame ``i`` (seen since ``first``)."""
    last_i = i if last is None else last
    return TrackedObject(track_id, label, scores[-1], box, first_ns=ctx_at(first).capture_ns,
                         last_ns=ctx_at(last_i).capture_ns, frames=len(scores), top_score=max(scores),
                         scores=list(scores), ended=ended)


class Events:
    """The events element fed by hand, frame by frame; collects what it emits."""

    def __init__(self, tmp: Path, **settings: object) -> None:
        self.element = EventsElement(EventsConfig(**settings), PipelineEnv(camera="cam", data_dir=tmp))
        self.out: list[tuple[int, EventType, str]] = []
        self.seen: dict[str, float] = {}

    def frame(self, i: int, *tracks: TrackedObject) -> None:
        ctx = ctx_at(i)
        ctx.tracks.extend(tracks)
        self.element.process(ctx)
        self.seen = ctx.seen
        self.out += [(i, u.type, u.event.event_id) for u in ctx.events if isinstance(u, EventUpdate)]
        self.last = [u.event for u in ctx.events if isinstance(u, EventUpdate)]

    def types(self) -> list[EventType]:
        return [t for _i, t, _e in self.out]


# --- confirmation: Frigate's median-score rule ---------------------------------------------------


def test_confirmed_needs_min_frames_and_the_median_of_the_last_ones() -> None:
    assert not confirmed(obj(1, 1, 0, [0.9, 0.9]), 3, 0.6)  # too few sightings
    assert confirmed(obj(1, 2, 0, [0.9, 0.55, 0.7]), 3, 0.6)  # median 0.7
    assert not confirmed(obj(1, 2, 0, [0.9, 0.55, 0.56]), 3, 0.6)  # median 0.56: a flicker
    # only the last min_frames count: an early high score does not carry a weak track
    assert not confirmed(obj(1, 4, 0, [0.99, 0.99, 0.5, 0.55, 0.58]), 3, 0.6)
    assert confirmed(obj(1, 4, 0, [0.5, 0.5, 0.7, 0.8, 0.58]), 3, 0.6)
    assert confirmed(obj(1, 0, 0, [0.51]), 1, 0.5)


def test_an_event_starts_only_once_confirmed_and_keeps_the_first_sighting(tmp_path: Path) -> None:
    ev = Events(tmp_path, min_frames=3, confirm_score=0.6)
    scores = [0.55, 0.52, 0.58, 0.9, 0.9]
    for i in range(len(scores)):
        ev.frame(i, obj(1, i, 0, scores[: i + 1]))
        if i < 4:
            assert ev.out == [], f"started at frame {i} with median below 0.6"
    assert ev.types() == [EventType.START] and ev.out[0][0] == 4  # median(0.58, 0.9, 0.9)
    assert ev.last[0].start_ns == ctx_at(0).capture_ns


def test_a_short_flicker_never_becomes_an_event(tmp_path: Path) -> None:
    ev = Events(tmp_path, min_frames=3, confirm_score=0.6, reopen_s=0)
    ev.frame(0, obj(1, 0, 0, [0.9]))
    ev.frame(1, obj(1, 1, 0, [0.9, 0.9]))
    ev.frame(8, obj(1, 8, 0, [0.9, 0.9], ended=True, last=1))
    assert ev.out == []


# --- re-opening: the end is held reopen_s for the object to come back ----------------------------


def seen_for(ev: Events, track_id: int, frames: range, box: Box = BOX) -> list[float]:
    scores: list[float] = []
    for i in frames:
        scores.append(0.9)
        ev.frame(i, obj(track_id, i, frames[0], scores, box=box))
    return scores


def test_same_track_back_within_reopen_s_continues_the_event(tmp_path: Path) -> None:
    ev = Events(tmp_path, reopen_s=2.0)
    scores = seen_for(ev, 7, range(0, 5))
    event_id = ev.out[0][2]
    ev.frame(20, obj(7, 20, 0, scores, ended=True, last=4))  # the track element ended it
    assert ev.types() == [EventType.START]  # held: no end yet
    assert event_id in ev.seen  # still open in the outbox, at its last sighting
    assert ev.seen[event_id] == pytest.approx(ctx_at(4).capture_ns / 1e9)
    ev.frame(25, obj(7, 25, 0, [*scores, 0.9]))  # 1 s later the same track is back
    assert ev.out[-1] == (25, EventType.UPDATE, event_id)
    ev.frame(40, obj(7, 40, 0, [*scores, 0.9], ended=True, last=25))
    ev.frame(49, )  # 1.8 s after the end: still waiting
    assert ev.types() == [EventType.START, EventType.UPDATE]
    ev.frame(50)  # 2 s: it ends, at the last sighting
    assert ev.out[-1] == (50, EventType.END, event_id)
    assert ev.last[0].end_ns == ctx_at(25).capture_ns
    assert ev.seen == {}
    assert [t for t in ev.types() if t == EventType.START] == [EventType.START]


def test_after_reopen_s_the_object_makes_a_new_event(tmp_path: Path) -> None:
    ev = Events(tmp_path, reopen_s=2.0)
    scores = seen_for(ev, 7, range(0, 5))
    first = ev.out[0][2]
    ev.frame(20, obj(7, 20, 0, scores, ended=True, last=4))
    ev.frame(30)  # 2 s later: ended
    assert ev.out[-1] == (30, EventType.END, first)
    seen_for(ev, 7, range(31, 34))  # the same id comes back too late
    assert ev.out[-1][1] == EventType.START and ev.out[-1][2] != first


def test_a_new_track_where_the_object_was_lost_continues_its_event(tmp_path: Path) -> None:
    ev = Events(tmp_path, reopen_s=2.0, reopen_distance=1.0)
    box = Box(300, 100, 380, 260)
    scores = seen_for(ev, 3, range(0, 5), box=box)
    event_id = ev.out[0][2]
    ev.frame(20, obj(3, 20, 0, scores, box=box, ended=True, last=4))
    # another label at the same place is someone else
    ev.frame(21, obj(9, 21, 21, [0.9], box=box, label="dog"))
    # the person comes back a little to the right, as a new track: the same event goes on
    ev.frame(22, obj(4, 22, 22, [0.8], box=Box(330, 104, 410, 262)))
    assert ev.out[-1] == (22, EventType.UPDATE, event_id)
    assert ev.last[0].track_id == 4  # it follows the new track now (its path, its data)
    ev.frame(40, obj(4, 40, 22, [0.8], box=Box(330, 104, 410, 262), ended=True, last=22))
    ev.frame(50)
    assert ev.out[-1] == (50, EventType.END, event_id)
    assert ev.types().count(EventType.START) == 1


def test_a_newcomer_far_away_or_after_an_exit_gets_its_own_event(tmp_path: Path) -> None:
    ev = Events(tmp_path, reopen_s=2.0)
    at_edge = Box(560, 100, 640, 260)  # walked out on the right
    for i in range(5):
        o = obj(3, i, 0, [0.9] * (i + 1), box=Box(520 + 10 * i, 100, 600 + 10 * i, 260))
        o.velocity = (50.0, 0.0)
        ev.frame(i, o)
    gone = obj(3, 20, 0, [0.9] * 5, box=at_edge, ended=True, last=4)
    gone.velocity = (50.0, 0.0)
    ev.frame(20, gone)
    seen_for(ev, 4, range(21, 24), box=Box(560, 100, 640, 260))  # someone walks in right there
    far = Events(tmp_path, reopen_s=2.0)
    scores = seen_for(far, 3, range(0, 5))
    far.frame(20, obj(3, 20, 0, scores, ended=True, last=4))
    seen_for(far, 4, range(21, 24), box=Box(450, 100, 530, 260))
    for e in (ev, far):
        assert e.types().count(EventType.START) == 2, e.out


def test_reopen_s_zero_ends_at_once(tmp_path: Path) -> None:
    ev = Events(tmp_path, reopen_s=0)
    scores = seen_for(ev, 1, range(0, 4))
    ev.frame(20, obj(1, 20, 0, scores, ended=True, last=3))
    assert ev.types() == [EventType.START, EventType.END]


# --- the track element: lost tracks come back with their id ---------------------------------------


def track_pipeline(tmp: Path, **settings: object) -> Pipeline:
    return Pipeline([("track", {"fps": FPS, "max_disappeared_s": 3.0, **settings})],
                    PipelineEnv(camera="cam", data_dir=tmp))


def walk(p: Pipeline, frames: range, x0: float, speed: float, label: str = "person",
         y: float = 100) -> list[set[int]]:
    """A box walking at ``speed`` px per frame from ``x0``; returns the ids seen each frame."""
    ids = []
    for i in frames:
        ctx = ctx_at(i)
        x = x0 + speed * (i - frames[0])
        ctx.detections.append(Detection(label, 0, 0.9, Box(x, y, x + 80, y + 160)))
        ids.append({t.track_id for t in p.process(ctx).tracks if not t.ended})
    return ids


def test_a_track_missed_for_a_second_keeps_its_id(tmp_path: Path) -> None:
    # the old element gave ByteTrack 15 "frames" that it counted at 30 fps: 0.6 s at 5 fps
    p = track_pipeline(tmp_path)
    before = walk(p, range(0, 10), 50, 12)
    for i in range(10, 16):  # 1.2 s without a detection
        assert not [t for t in p.process(ctx_at(i)).tracks if not t.ended]
    after = walk(p, range(16, 22), 50 + 12 * 16, 12)
    assert set().union(*before, *after) == {1}


def test_a_track_lost_behind_an_occluder_is_reidentified_where_it_was_heading(tmp_path: Path) -> None:
    # the tracker forgets the lost track (lost_track_s 0.4 here); the re-identification finds it
    p = track_pipeline(tmp_path, min_iou=0.5, lost_track_s=0.4)
    before = walk(p, range(0, 10), 50, 12)
    for i in range(10, 20):  # 2 s hidden, walking on
        p.process(ctx_at(i))
    after = walk(p, range(20, 25), 50 + 12 * 20, 12)
    assert set().union(*before, *after) == {1}
    off = track_pipeline(tmp_path, min_iou=0.5, lost_track_s=0.4, reid_distance=0)
    walk(off, range(0, 10), 50, 12)
    for i in range(10, 20):
        off.process(ctx_at(i))
    assert walk(off, range(20, 21), 50 + 12 * 20, 12) != [{1}]


def test_an_unseen_track_ends_after_max_disappeared_s_and_a_later_one_is_new(tmp_path: Path) -> None:
    p = track_pipeline(tmp_path, max_disappeared_s=1.0)
    walk(p, range(0, 5), 50, 10)
    ended = []
    for i in range(5, 12):
        ended += [t.track_id for t in p.process(ctx_at(i)).tracks if t.ended]
    assert ended == [1]
    assert walk(p, range(12, 15), 90, 10)[1:] == [{2}, {2}]  # a new track shows from its 2nd frame


def test_someone_walking_in_where_another_walked_out_is_someone_else(tmp_path: Path) -> None:
    p = track_pipeline(tmp_path, min_iou=0.5, lost_track_s=0.4)
    out = walk(p, range(0, 6), 500, 12)  # walks right, out of the frame
    assert out[-1] == {1}
    for i in range(6, 9):
        p.process(ctx_at(i))
    came = walk(p, range(9, 12), 560, -12)  # someone comes in at the same border, walking left
    assert 1 not in set().union(*came)


def test_reid_geometry() -> None:
    last = Box(100, 100, 180, 260)
    assert reid_cost(last, (0, 0), 2.0, last) == 0
    assert reid_cost(last, (50, 0), 2.0, Box(200, 100, 280, 260)) == pytest.approx(0)  # walked on
    assert reid_cost(last, (50, 0), 2.0, Box(100, 100, 180, 260)) == 0  # stopped
    # cut by an occluder on its right and below: its top-left corner still agrees
    assert reid_cost(last, (0, 0), 1.0, Box(100, 100, 140, 180)) == 0
    assert reid_cost(last, (0, 0), 1.0, Box(140, 100, 220, 260)) == pytest.approx(40 / 160)
    assert reid_cost(last, (0, 0), 1.0, Box(100, 0, 600, 360)) == float("inf")  # twice as tall
    # an occluder holds the leading edge: the trailing one gives the speed
    assert edge_velocity(Box(100, 0, 180, 10), Box(112, 0, 180, 10), 0.2) == (60, 0)
    assert left_frame(Box(600, 0, 640, 100), (30, 0), 640, 360)
    assert not left_frame(Box(600, 0, 640, 100), (-30, 0), 640, 360)  # walking in
    assert not left_frame(Box(300, 0, 380, 100), (30, 0), 640, 360)


# --- the metrics ----------------------------------------------------------------------------------


def test_metrics_count_switches_fragments_and_events_per_object() -> None:
    a, b = (0.0, 0.0, 10.0, 10.0), (50.0, 0.0, 60.0, 10.0)
    perfect = Sequence_("p", [FrameBoxes([(1, a, 1.0), (2, b, 1.0)], [(7, a), (8, b)]) for _ in range(4)],
                        [("e1", 0.0, 1.0, 1), ("e2", 0.0, 1.0, 2)])
    s = summarise([perfect])
    assert (s["idf1"], s["idsw"], s["frag"], s["events_per_object"]) == (1.0, 0, 0, 1.0)
    assert s["objects_without_event"] == s["objects_with_several_events"] == 0
    # object 1 changes id half-way and is missed once before (a false box elsewhere: TrackEval
    # counts no fragmentation in a frame without any tracker box); it made two events, object 2 none
    c = (200.0, 0.0, 210.0, 10.0)
    frames = [FrameBoxes([(1, a, 1.0)], [(7, a)]), FrameBoxes([(1, a, 1.0)], [(8, c)]),
              FrameBoxes([(1, a, 1.0)], [(9, a)]), FrameBoxes([(1, a, 1.0)], [(9, a)]),
              FrameBoxes([(2, b, 1.0)], [])]
    split = Sequence_("s", frames, [("e1", 0.0, 0.2, 1), ("e2", 0.4, 0.6, 1)])
    s = summarise([split])
    assert s["idsw"] == 1 and s["frag"] == 1
    assert s["idf1"] == pytest.approx(2 * 2 / (2 * 2 + 3 + 2))  # 2 right of 5 asked, 2 wrong
    assert s["events_per_object"] == 1.0 and s["objects_without_event"] == 1
    assert s["objects_with_several_events"] == 1 and s["shortest_event_s"] == pytest.approx(0.2)


def test_a_box_on_a_mostly_hidden_walker_is_not_a_false_positive() -> None:
    a = (0.0, 0.0, 10.0, 10.0)
    seq = Sequence_("h", [FrameBoxes([(1, a, 0.3)], [(7, a)]), FrameBoxes([(1, a, 1.0)], [(7, a)])])
    s = summarise([seq])
    assert s["idf1"] == 1.0 and s["mota"] == 1.0
    assert seq.match(1, a) == 1 and seq.match(1, (50.0, 50.0, 60.0, 60.0)) is None


# --- detect's refresh_s: a still object is looked at again ---------------------------------------


class _Detector:
    """A detector service stand-in: the person at BOX in every crop that holds it (pure logic)."""

    input_size = (300, 300)

    def __init__(self) -> None:
        self.crops: list[int] = []

    def detect(self, crops: list[np.ndarray]) -> list[list[Detection]]:
        self.crops.append(len(crops))
        return [[Detection("person", 0, 0.9, Box(0, 0, 300, 300))] for _ in crops]


def test_refresh_s_re_detects_a_live_track_when_nothing_moves(tmp_path: Path) -> None:
    from camfleet.pipeline.detect import DetectConfig, DetectElement
    from camfleet.pipeline.track import TrackConfig, TrackElement

    detector = _Detector()
    env = PipelineEnv(camera="cam", data_dir=tmp_path, services={"detectors": {"cpu": detector}})
    detect = DetectElement(DetectConfig(detector="cpu", refresh_s=1.0), env)
    track = TrackElement(TrackConfig(fps=FPS), env)
    for i in range(3):  # the person walks in: motion, detections, a track
        ctx = ctx_at(i)
        ctx.motion.append(BOX)
        detect.process(ctx)
        track.process(ctx)
    assert detector.crops == [1, 1, 1] and ctx.tracks
    for i in range(3, 6):  # then stands still: no motion at all
        ctx = ctx_at(i)
        detect.process(ctx)
        track.process(ctx)
    assert detector.crops == [1, 1, 1]  # within refresh_s: no request without motion
    later = ctx_at(8)  # 1.2 s after the last detection
    detect.process(later)
    assert detector.crops == [1, 1, 1, 1] and later.detections  # looked at again where the track is
