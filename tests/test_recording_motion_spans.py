"""Motion spans are journalled open, extended, and closed at a restart; retention keeps open ones.

Issue 12, item 8: a motion span used to reach the store only when motion
ended, so retention in ``record.mode: motion`` deleted the footage of any
long motion while it was going on, and a killed pipeline's span was never
reported. The 3-minute node scenario is ``test_recording_motion_e2e.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest

from camfleet.config import load_config_text
from camfleet.events import Journal, OutboxProducer, journal_path
from camfleet.recording import RetentionManager, segment_relpath
from camfleet.recording.retention import journal_open_spans
from camfleet.runtime.children import MOTION_EXTEND_S, _Activity
from camfleet.runtime.eventpath import EventPath
from camfleet.store import ActivityRecord, SegmentRecord, Store
from camfleet.vocabulary import ActivityMessage, MotionSpan, decode, encode

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0


def _spans(journal: Journal) -> list[MotionSpan]:
    out = []
    for entry in journal.entries("activity"):
        m = decode(entry.body)
        assert isinstance(m, ActivityMessage)
        out.append(m.span)
    return out


def test_the_open_flag_keeps_the_encoding_backward_compatible() -> None:
    closed = ActivityMessage(MotionSpan("cam", "motion", T0, T0 + 1))
    assert "open" not in json.loads(encode(closed))["span"]  # what older nodes wrote and read
    old = '{"kind": "activity", "span": {"camera": "cam", "kind": "motion", "start": 1.0, "end": 2.0}}'
    m = decode(old)
    assert isinstance(m, ActivityMessage) and m.span.open is False
    opened = ActivityMessage(MotionSpan("cam", "motion", T0, T0 + 1, open=True))
    assert decode(encode(opened)) == opened
    with pytest.raises((TypeError, ValueError)):
        decode(old.replace('"end": 2.0', '"end": 2.0, "open": "yes"'))


def test_the_journal_tracks_open_spans_and_closes_them(tmp_path: Path) -> None:
    with Journal(tmp_path / "outbox.db") as j:
        for end in (T0, T0 + 5, T0 + 10):
            j.append([ActivityMessage(MotionSpan("cam", "motion", T0, end, open=True))])
        j.append([ActivityMessage(MotionSpan("other", "motion", T0, T0 + 3, open=True))])
        assert j.open_spans("cam") == [MotionSpan("cam", "motion", T0, T0 + 10, open=True)]
        # the pipeline's restart 4 s after the last extension: closed at the restart
        assert j.close_open_spans("cam", now=T0 + 14) == [MotionSpan("cam", "motion", T0, T0 + 14)]
        assert j.open_spans("cam") == [] and len(j.open_spans()) == 1
        assert _spans(j)[-1] == MotionSpan("cam", "motion", T0, T0 + 14)  # delivered like any span
        # a node down for hours: at most OPEN_SPAN_GRACE_S (60 s) past the last extension
        assert j.close_open_spans(now=T0 + 9999) == [MotionSpan("other", "motion", T0, T0 + 63)]
        # a span its pipeline closed is forgotten
        j.append([ActivityMessage(MotionSpan("cam", "motion", T0 + 100, T0 + 100, open=True))])
        j.append([ActivityMessage(MotionSpan("cam", "motion", T0 + 100, T0 + 104))])
        assert j.open_spans() == []


def test_the_pipeline_journals_a_span_open_extends_it_and_closes_it(tmp_path: Path) -> None:
    producer = OutboxProducer(tmp_path / "outbox.db", fsync=False)
    activity = _Activity("cam", producer)
    t = T0
    while t < T0 + 12:  # 12 s of motion at 5 fps
        activity.frame(True, t)
        t += 0.2
    last = t - 0.2
    assert producer.journal.open_spans("cam") == [MotionSpan("cam", "motion", T0, pytest.approx(T0 + 10),
                                                             open=True)]
    while t < last + 3:  # still: the span ends after MOTION_QUIET_S
        activity.frame(False, t)
        t += 0.2
    spans = _spans(producer.journal)
    assert [s.open for s in spans] == [True, True, True, False]
    assert [round(s.end - T0, 1) for s in spans] == [0.0, MOTION_EXTEND_S, 2 * MOTION_EXTEND_S,
                                                     round(last - T0, 1)]
    assert {s.start for s in spans} == {T0} and producer.journal.open_spans() == []
    producer.close()


def test_a_killed_pipelines_span_is_closed_by_its_successor(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    start = time.time() - 30
    victim = OutboxProducer(path, fsync=False)
    activity = _Activity("cam", victim)
    for i in range(60):  # 12 s of motion, then SIGKILL: no flush, no close
        activity.frame(True, start + i * 0.2)
    victim.close()
    successor = OutboxProducer(path, fsync=False)
    before = time.time()
    closed = successor.close_open_spans("cam")
    assert len(closed) == 1 and not closed[0].open and closed[0].start == start
    assert before <= closed[0].end <= time.time()  # nobody watched until now: kept up to the restart
    assert successor.journal.open_spans() == []
    successor.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 5 fps H.264 MP4 (64x64)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def test_retention_keeps_the_footage_of_motion_going_on(tmp_path: Path, clip: Path) -> None:
    """3 minutes of motion still going on; the store has only seen it last until 100 s ago."""
    now = time.time()
    config = load_config_text(f"""
data_dir: {tmp_path}
pipelines: {{p: [motion: {{}}]}}
cameras:
  a: {{pipeline: p, sources: [{{url: 'synthetic://a', roles: [detect, record]}}],
      record: {{enabled: true, mode: motion, pre_capture: 0, post_capture: 0}}}}
""")
    store = Store.open(config.database_url)
    rec = config.recordings_path
    for k in range(90):  # 2 s segments from now - 180 s to now
        rel = segment_relpath("a", now - 180 + 2 * k)
        (rec / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, rec / rel)
        store.add_segment(SegmentRecord(camera="a", path=rel, start=now - 180 + 2 * k, end=now - 178 + 2 * k,
                                        size=(rec / rel).stat().st_size, frames=10, keyframes=1))
    store.add_activity([ActivityRecord("a", "motion", now - 180, now - 100)])  # a lagging pump
    with Journal(journal_path(config.data_path)) as j:
        j.append([ActivityMessage(MotionSpan("a", "motion", now - 180, now - 100, open=True))])
    open_spans = journal_open_spans(journal_path(config.data_path))

    report = RetentionManager(store, config, open_spans=open_spans, free_bytes=_plenty).run_once(now)
    assert report.deleted == []
    assert len(store.query_segments(camera="a")) == 90
    # the same pass without the open span would have deleted what follows the stored end by > 60 s
    doomed = RetentionManager(store, config, free_bytes=_plenty).run_once(now).deleted
    assert doomed and all(now - 100 <= d.start and d.end < now - 60 for d in doomed)
    store.close()


def _plenty(_path: Path) -> int:
    return 10**12


def test_a_node_start_closes_every_open_span(tmp_path: Path) -> None:
    """A killed node's pipelines never closed their spans: the next node start does, for all cameras."""
    config = load_config_text(f"""
data_dir: {tmp_path}
pipelines: {{p: [motion: {{}}]}}
cameras:
  a: {{pipeline: p, sources: [{{url: 'synthetic://a', roles: [detect]}}]}}
""")
    last = time.time() - 3600  # the node died an hour ago, mid-motion
    with Journal(journal_path(config.data_path)) as j:
        for cam in ("a", "gone"):
            j.append([ActivityMessage(MotionSpan(cam, "motion", last - 10, last, open=True))])
    path = EventPath(config, None, lambda _m: None)
    path.start()
    try:
        assert path.flush(10)
    finally:
        path.stop()
    with Journal(journal_path(config.data_path)) as j:
        assert j.open_spans() == []
        closed = [s for s in _spans(j) if not s.open]
    assert sorted((s.camera, s.end - last) for s in closed) == [("a", 60.0), ("gone", 60.0)]
