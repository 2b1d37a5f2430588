"""Recording from the real RTSP simulator: one ~65 s session, many checks.

The module fixture runs the whole scenario once (sim → ingest thread → packet
ring → recorder *process* → mp.Queue → StoreWriter → SQLite), with a
``kill -9`` of the recorder mid-segment followed by a restart, and a stall of
the simulated camera; the tests then check what was recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest

from camfleet.config import Config, load_config_text
from camfleet.ingest import IngestConfig, IngestState, IngestWorker, SourceOptions
from camfleet.recording import ExportError, check_storage, event_clip, export_clip, recorder_main
from camfleet.store import EventRecord, SegmentRecord, Store, StoreWriter
from camfleet.vocabulary import SegmentMessage
from camfleet_testing.sim import CameraSpec, SimServer

pytestmark = [pytest.mark.process, pytest.mark.beside]

CAMERA = "rec"
FPS = 15.0
GOP = 15  # frames: one keyframe a second
SEGMENT_S = 4.0
FRAME = 1 / FPS
ctx = mp.get_context("spawn")


def recorder_process(config: Config, camera: str, sink: Any, shm: str) -> None:
    """Child entry: the production ``recorder_main`` in this test's segment directory."""
    os.environ["CAMFLEET_SHM_DIR"] = shm
    recorder_main(config, camera, sink)


@dataclass
class Session:
    dir: Path
    store: Store
    rows: list[SegmentRecord]
    started: float
    stopped: float
    kill_at: float
    restart_at: float
    stall_at: float
    resume_at: float
    parts_after_kill: list[str]
    parts_at_end: list[str]
    messages: list[tuple[float, SegmentMessage]] = field(default_factory=list)
    exits: list[int | None] = field(default_factory=list)


class Drain:
    """Moves messages from the recorders' queues into the StoreWriter (the node's job)."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.queues: list[Any] = []
        self.messages: list[tuple[float, SegmentMessage]] = []
        self.arrived = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            got = False
            for q in list(self.queues):
                with contextlib.suppress(queue.Empty, OSError, EOFError):
                    msg = q.get(timeout=0.05)
                    self.writer.submit(msg)
                    got = True
                    with self.arrived:
                        self.messages.append((time.time(), msg))
                        self.arrived.notify_all()
            if not got and not self.queues:
                self.stop.wait(0.05)

    def wait_count(self, n: int, timeout: float) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= n, timeout), (
                f"{len(self.messages)} segment messages after {timeout} s, expected {n}"
            )

    def wait_end(self, t: float, timeout: float) -> None:
        """Wait for a segment that ends at or after ``t`` (epoch s)."""
        with self.arrived:
            assert self.arrived.wait_for(
                lambda: any(m.segment.end >= t for _, m in self.messages), timeout
            ), f"no segment ending after {t}"


def _start_recorder(config: Config, drain: Drain, shm: str) -> Any:
    q = ctx.Queue()
    drain.queues.append(q)
    proc = ctx.Process(target=recorder_process, args=(config, CAMERA, q, shm), daemon=True)
    proc.start()
    return proc


def _parts(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.part"))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    shm = Path("/dev/shm") / f"camfleet-rec-{os.getpid()}-{secrets.token_hex(3)}"
    shm.mkdir(mode=0o700)
    data = tmp_path_factory.mktemp("rec")
    spec = CameraSpec(name=CAMERA, codec="h264", width=320, height=180, fps=FPS, bitrate_kbps=300, gop=GOP)
    with pytest.MonkeyPatch.context() as mp_env, SimServer([spec], port=0) as sim:
        mp_env.setenv("CAMFLEET_SHM_DIR", str(shm))
        config = load_config_text(f"""
data_dir: {data}
pipelines: {{p: [motion: {{}}]}}
cameras:
  {CAMERA}:
    pipeline: p
    sources: [{{url: "{sim.url(CAMERA)}", roles: [detect, record]}}]
    record: {{enabled: true, segment_seconds: {SEGMENT_S}}}
""")
        store = Store.open(config.database_url)
        writer = StoreWriter(store)
        writer.start()
        drain = Drain(writer)
        stop_ingest = threading.Event()
        streaming = threading.Event()
        worker = IngestWorker(
            IngestConfig(url=sim.url(CAMERA), key=CAMERA,
                         source=SourceOptions(open_timeout=5, stall_timeout=3.0),
                         backoff_initial=0.2, backoff_max=1.0),
            on_state=lambda s, _e: streaming.set() if s == IngestState.STREAMING else None,
        )
        ingest = threading.Thread(target=worker.run, args=(stop_ingest,), daemon=True)
        ingest.start()
        procs: list[Any] = []
        try:
            assert streaming.wait(20), "the ingest never streamed"
            started = time.time()
            procs.append(_start_recorder(config, drain, str(shm)))
            drain.wait_count(3, 30)
            # kill -9 in the middle of a segment: 2 s after one was announced
            time.sleep(2.0)  # a wall-clock offset into the segment, not a synchronisation
            kill_at = time.time()
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].join(10)
            parts_after_kill = _parts(config.recordings_path)
            restart_at = time.time()
            procs.append(_start_recorder(config, drain, str(shm)))
            n = len(drain.messages)
            drain.wait_count(n + 3, 30)
            stall_at = time.time()
            sim.stall(CAMERA)
            time.sleep(6.0)  # the length of the camera's outage
            sim.resume(CAMERA)
            resume_at = time.time()
            remaining = started + 66 - time.time()
            time.sleep(max(remaining, 12.0))  # keep recording: the session spans more than 60 s
            stopped = time.time()
            procs[1].terminate()  # SIGTERM: the open segment is finished
            procs[1].join(15)
            exits = [p.exitcode for p in procs]
            drain.wait_end(stopped - 2.0, 10)
            assert writer.flush(10)
            parts_at_end = _parts(config.recordings_path)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(5)
            drain.stop.set()
            drain.thread.join(5)
            stop_ingest.set()
            ingest.join(15)
            writer.stop()
    yield Session(
        dir=config.recordings_path, store=store, rows=store.query_segments(camera=CAMERA),
        started=started, stopped=stopped, kill_at=kill_at, restart_at=restart_at,
        stall_at=stall_at, resume_at=resume_at, parts_after_kill=parts_after_kill,
        parts_at_end=parts_at_end, messages=list(drain.messages), exits=exits,
    )
    store.close()
    leftovers = sorted(p.name for p in shm.iterdir())
    shutil.rmtree(shm, ignore_errors=True)
    assert leftovers == [], f"segments leaked: {leftovers}"


def _decode_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_session_recorded_over_a_minute_and_stopped_cleanly(session: Session) -> None:
    assert session.stopped - session.started >= 60
    assert session.exits == [-signal.SIGKILL, 0]
    assert len(session.rows) >= 12
    assert len(session.messages) == len(session.rows)
    assert session.rows[-1].end >= session.stopped - 2.0  # the open segment was finished on stop


def test_every_segment_is_playable_with_the_frames_its_duration_needs(session: Session) -> None:
    total = 0
    for row in session.rows:
        path = session.dir / row.path
        assert path.suffix == ".mp4" and path.is_file()
        decoded = _decode_count(path)
        assert decoded == row.frames, row
        expected = (row.end - row.start) * FPS
        assert abs(decoded - expected) <= GOP, (row, decoded, expected)
        assert row.keyframes >= 1 and row.size == path.stat().st_size
        total += decoded
    assert total >= 45 * FPS  # 66 s less the stall, the reconnect and the restart


def test_segments_are_cut_at_keyframes_near_the_target_length(session: Session) -> None:
    full = [r for r in session.rows if r.keyframes > 1 or r.end - r.start >= SEGMENT_S]
    assert len(full) >= 8
    for row in full:
        with av.open(str(session.dir / row.path)) as c:
            first = next(iter(c.demux(video=0)))
            assert first.is_keyframe
    lengths = sorted(r.end - r.start for r in session.rows)
    assert lengths[-1] <= SEGMENT_S + GOP / FPS + FRAME  # never longer than target + one GOP
    assert sum(1 for x in lengths if abs(x - SEGMENT_S) <= FRAME * 2) >= 8, lengths


def test_segments_are_contiguous_except_across_the_kill_and_the_stall(session: Session) -> None:
    windows = [(session.kill_at - SEGMENT_S - 1, session.restart_at + 8),
               (session.stall_at - 1, session.resume_at + 15)]
    gaps = [0, 0]
    for a, b in itertools.pairwise(session.rows):
        assert b.start >= a.end - FRAME, f"overlap: {a} / {b}"
        if b.start - a.end <= FRAME:
            continue
        where = [i for i, (lo, hi) in enumerate(windows) if lo <= a.end and b.start <= hi]
        assert where, f"unexpected gap {a.end}..{b.start}"
        gaps[where[0]] += 1
    # the stall always leaves a hole; the kill may not: the recovered part ends at its last flushed
    # GOP and a quick restart joins the ring at the keyframe right after it, losing nothing
    assert gaps[0] <= 2 and 1 <= gaps[1] <= 2, gaps


def test_rows_match_files(session: Session) -> None:
    report = check_storage(session.store, session.dir, repair=False)
    assert report.ok, report
    assert report.rows == report.files == len(session.rows)


def test_kill_minus_nine_leaves_no_referenced_corrupt_file_and_recording_resumes(session: Session) -> None:
    assert session.parts_after_kill, "the recorder was killed mid-segment: a .part was left"
    assert session.parts_at_end == []  # the restarted recorder finalised or removed it
    assert not any(r.path.endswith(".part") for r in session.rows)  # never referenced
    # a finalised leftover is a normal, playable segment that ends before the kill
    salvaged = [r for r in session.rows if f"{r.path}.part" in session.parts_after_kill]
    for row in salvaged:
        assert row.end <= session.kill_at + 0.5
    after = [r for r in session.rows if r.start >= session.restart_at - 1]
    assert after and after[0].start - session.restart_at < 10


def test_stall_closes_the_segment_and_recording_resumes_without_time_warp(session: Session) -> None:
    quiet_lo, quiet_hi = session.stall_at + 1.0, session.resume_at
    assert not [r for r in session.rows if r.start < quiet_hi and quiet_lo < r.end]
    before = [r for r in session.rows if r.end <= quiet_lo]
    after = [r for r in session.rows if r.start >= quiet_hi]
    assert before and after
    assert after[0].start - session.resume_at < 12  # reconnect + next keyframe
    for row in (before[-1], after[0]):  # frames match the wall-clock span: no warp
        assert abs(row.frames - (row.end - row.start) * FPS) <= 2, row


def test_exported_clip_covers_the_range_within_one_gop_and_plays(session: Session, tmp_path: Path) -> None:
    rows = [r for r in session.rows if r.end < session.kill_at - 1]
    assert len(rows) >= 2
    start, end = rows[0].start + 1.3, rows[1].start + 2.1  # across a segment boundary
    out = tmp_path / "clip.mp4"
    info = export_clip(session.store, session.dir, CAMERA, start, end, out)
    assert 0 <= start - info.start <= GOP / FPS + FRAME
    assert info.end >= end - 2 * FRAME and info.end <= end + 2 * FRAME
    assert info.segments == 2 and info.missing == 0
    with av.open(str(out)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
        assert packets[0].is_keyframe
    decoded = _decode_count(out)
    assert decoded == info.frames
    assert abs(decoded - (info.end - info.start) * FPS) <= 2
    assert not list(tmp_path.glob("*.part"))


def test_event_clip_and_clear_errors(session: Session, tmp_path: Path) -> None:
    rows = [r for r in session.rows if r.end < session.kill_at - 1]
    ev = EventRecord(id="ev-rec-1", camera=CAMERA, label="person", start=rows[1].start + 0.5,
                     end=rows[1].start + 1.5)
    session.store.upsert_event(ev)
    info = event_clip(session.store, session.dir, "ev-rec-1", tmp_path / "ev.mp4", pre=1.0, post=1.0)
    assert info.start <= ev.start - 1.0 and info.end >= ev.end + 1.0 - 2 * FRAME
    assert _decode_count(tmp_path / "ev.mp4") == info.frames
    with pytest.raises(ExportError, match="unknown event"):
        event_clip(session.store, session.dir, "nope", tmp_path / "x.mp4")
    with pytest.raises(ExportError, match="unknown camera"):
        export_clip(session.store, session.dir, "nocam", rows[0].start, rows[0].end, tmp_path / "x.mp4")
    with pytest.raises(ExportError, match="no footage"):
        export_clip(session.store, session.dir, CAMERA, 1000.0, 2000.0, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
