"""The detector's inference workers, 2 requests in flight, real batches and the start-up race.

Real detector processes (``DetectorManager``), real sockets and request rings;
the runtimes are :class:`tests.support.detect_helpers.MarkerRuntime` (whose
answers say which image they belong to) and a tiny ONNX model run by real
onnxruntime (whose scores scale with each image's brightest pixel).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from camfleet.detect.models import default_model_spec
from camfleet.detect.protocol import socket_path
from camfleet.detect.service import (
    EXIT_WORKER_DIED,
    DetectorClient,
    DetectorFailed,
    DetectorSettings,
    read_heartbeat,
)
from camfleet.detect.workers import MAX_WORKERS, default_workers
from camfleet.framebus import InvalidFormat
from camfleet.runtime.detectors import DetectorManager
from tests.support.detect_helpers import DIE, RELEASE, SLOW_START_S, WAIT, marker
from tests.support.tiny_yolo import yolo_onnx, yolo_spec

pytestmark = pytest.mark.process

MARKER = "tests.support.detect_helpers:marker_runtime"


@pytest.fixture
def pool(request: pytest.FixtureRequest) -> Iterator[DetectorManager]:
    # more workers than run slots: every test here runs with workers waiting for a slot
    overrides = {"factory": MARKER, "workers": 3, "max_running": 2, **getattr(request, "param", {})}
    mgr = DetectorManager(DetectorSettings(name="pool", model=default_model_spec(), **overrides), check_s=0.1)
    mgr.start()
    yield mgr
    mgr.stop()


def _score(dets: list[list[object]]) -> float:
    return float(dets[0][0].score)  # type: ignore[attr-defined]


def test_detector_and_cameras_started_at_the_same_instant_never_fail() -> None:
    """A node starts detectors and pipelines together: cameras that connect before the detector
    listens (no socket yet, or a killed predecessor's socket that nobody listens on) wait for it,
    and a detector started from a thread that then ends lives on (it dies with the process
    that supervises it, not with the thread that started it)."""
    for attempt in range(4):
        name = f"race{attempt}"
        if attempt % 2:  # what a killed detector leaves: the socket file, nobody listening
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(str(socket_path(name)))
            stale.close()
        settings = DetectorSettings(name=name, model=default_model_spec(), factory=MARKER, workers=2)
        manager = DetectorManager(settings, check_s=0.05)
        clients = [DetectorClient(name, f"cam{i}", (300, 300)) for i in range(3)]
        go = threading.Barrier(len(clients) + 1)
        scores: dict[int, float] = {}
        errors: list[BaseException] = []

        def camera(i: int, go: threading.Barrier = go, clients: list[DetectorClient] = clients) -> None:
            go.wait(10)
            try:
                scores[i] = _score(clients[i].detect([marker(10 + i)]))  # noqa: B023 - joined below
            except Exception as exc:
                errors.append(exc)  # noqa: B023

        def start(go: threading.Barrier = go, manager: DetectorManager = manager) -> None:
            go.wait(10)
            manager.start()

        threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(clients))]
        threads.append(threading.Thread(target=start))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == [], errors
            assert scores == {i: pytest.approx((10 + i) / 255) for i in range(len(clients))}
            pid = manager.pid
            # the thread that started the detector has ended: the detector still serves, same process
            assert _score(clients[0].detect([marker(99)])) == pytest.approx(99 / 255)
            assert manager.restarts == 0 and manager.pid == pid, manager.last_reason
        finally:
            for c in clients:
                c.close()
            manager.stop()


def test_a_camera_connecting_while_the_workers_build_waits_for_its_welcome() -> None:
    """The detector listens before its workers build their runtimes (slow here): a camera that
    connects meanwhile, with no connect grace at all, is answered once the detector serves."""
    name = "slowstart"
    settings = DetectorSettings(name=name, model=default_model_spec(), workers=1,
                                factory="tests.support.detect_helpers:slow_start_marker_runtime")
    manager = DetectorManager(settings, check_s=0.1)
    starter = threading.Thread(target=manager.start)
    client = DetectorClient(name, "early", (300, 300), connect_grace=0.0, timeout=30)
    starter.start()
    try:
        deadline = time.monotonic() + 60
        while not socket_path(name).exists():  # the process is spawned: nothing to wait on before
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert read_heartbeat(name) is None  # listening, the runtime still building: not yet serving
        t0 = time.monotonic()
        assert _score(client.detect([marker(17)])) == pytest.approx(17 / 255)
        assert time.monotonic() - t0 < SLOW_START_S + 20
        starter.join(60)
        assert manager.restarts == 0 and client.stats()["workers"] == 1
    finally:
        client.close()
        starter.join(60)
        manager.stop()


@pytest.mark.parametrize("pool", [{"workers": 5, "max_running": 2}], indirect=True)
def test_six_cameras_two_in_flight_on_five_workers_with_two_run_slots(pool: DetectorManager) -> None:
    """More workers than run slots, every camera with 2 requests in flight: each answer goes to its
    own request of its own camera, and every request of every camera is answered."""
    cameras, per_camera = 6, 20
    got: dict[int, list[tuple[int, float]]] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(cameras)
    clients = [DetectorClient("pool", f"cam{c}", (300, 300)) for c in range(cameras)]

    def camera(c: int) -> None:
        client = clients[c]
        try:
            go.wait(10)
            pending: list[tuple[int, int]] = []
            answers: list[tuple[int, float]] = []
            for k in range(per_camera):
                value = 1 + c * per_camera + k  # distinct over all cameras
                pending.append((client.submit([marker(value)]), value))
                if len(pending) == 2:
                    rid, v = pending.pop(0)  # keep 2 in flight: collect the older one
                    answers.append((v, _score(client.result(rid))))
            answers += [(v, _score(client.result(rid))) for rid, v in pending]
            got[c] = answers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(c,)) for c in range(cameras)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [], errors
        for c in range(cameras):
            values = [v for v, _ in got[c]]
            assert values == [1 + c * per_camera + k for k in range(per_camera)]
            assert [s for _, s in got[c]] == pytest.approx([v / 255 for v in values])
        stats = clients[0].stats()
        assert stats["max_running"] == 2 and stats["workers"] == 5
        assert stats["running"] == 0 and stats["running_jobs"] == 0
        assert {c["requests"] for c in stats["cameras"].values()} == {per_camera}
        assert pool.restarts == 0
    finally:
        for cl in clients:
            cl.close()


def test_answers_come_back_out_of_order_and_each_goes_to_its_request(pool: DetectorManager) -> None:
    """Two requests in flight on one camera, the first held by its worker until a later one
    releases it: the second's answer arrives first, and every request gets its own image's."""
    client = DetectorClient("pool", "door", (300, 300))
    try:
        first = client.submit([marker(11, WAIT)])
        second = client.submit([marker(22)])
        assert client.inflight == 2
        assert _score(client.result(second)) == pytest.approx(22 / 255)
        assert not client.ready(first)  # still held by its worker: answers came out of order
        t0 = time.monotonic()
        assert not client.ready(first, timeout=0.2)  # waits that long, no more, for an answer held back
        assert 0.15 <= time.monotonic() - t0 < 2.0
        third = client.submit([marker(33, RELEASE)])
        assert client.ready(first, timeout=10)  # returns as soon as it is in
        assert _score(client.result(first)) == pytest.approx(11 / 255)
        assert _score(client.result(third)) == pytest.approx(33 / 255)
        with pytest.raises(KeyError):
            client.result(first)  # answered exactly once
    finally:
        client.close()


def test_images_filled_in_the_ring_and_a_fill_that_fails_sends_nothing(pool: DetectorManager) -> None:
    """``submit_into``: the caller writes each image straight into its request ring slot. A fill
    that raises halfway leaves slots the detector never reads (the next request is answered with
    its own images), and an image of the wrong size is refused before anything is sent."""
    client = DetectorClient("pool", "porch", (300, 300))
    try:
        def fill(values: list[int]) -> Callable[[int, np.ndarray], None]:
            def write(i: int, dst: np.ndarray) -> None:
                if values[i] < 0:
                    raise RuntimeError("crop failed")
                dst[:] = marker(values[i])
            return write

        rid = client.submit_into(2, fill([41, 42]))
        assert [float(d[0].score) for d in client.result(rid)] == pytest.approx([41 / 255, 42 / 255])
        with pytest.raises(RuntimeError, match="crop failed"):
            client.submit_into(3, fill([50, 51, -1]))
        assert client.inflight == 0
        assert [float(d[0].score) for d in client.detect([marker(60), marker(61)])] == pytest.approx(
            [60 / 255, 61 / 255])
        with pytest.raises(InvalidFormat, match=r"image 0 is \(200, 300, 3\) uint8"):
            client.submit([np.zeros((200, 300, 3), np.uint8)])
        assert client.inflight == 0
        assert _score(client.detect([marker(70)])) == pytest.approx(70 / 255)
    finally:
        client.close()


@pytest.mark.parametrize("pool", [{"workers": 4}], indirect=True)
def test_many_cameras_two_in_flight_every_request_answered_once_with_its_own_image(
    pool: DetectorManager,
) -> None:
    cameras, per_camera = 4, 25
    got: dict[int, list[tuple[int, float]]] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(cameras)

    def camera(c: int) -> None:
        client = DetectorClient("pool", f"cam{c}", (300, 300))
        try:
            go.wait(10)
            pending: list[tuple[int, int]] = []
            answers: list[tuple[int, float]] = []
            for k in range(per_camera):
                value = 1 + c * per_camera + k  # distinct over all cameras
                pending.append((client.submit([marker(value)]), value))
                if len(pending) == 2 or k == per_camera - 1:
                    for rid, v in pending:
                        answers.append((v, _score(client.result(rid))))
                    pending.clear()
            got[c] = answers
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=camera, args=(c,)) for c in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], errors
    for c in range(cameras):
        values = [v for v, _ in got[c]]
        assert values == [1 + c * per_camera + k for k in range(per_camera)]
        assert [s for _, s in got[c]] == pytest.approx([v / 255 for v in values])
    assert pool.restarts == 0


SLOW = "tests.support.detect_helpers:slow_marker_runtime"


@pytest.mark.parametrize("pool", [{"workers": 1, "factory": SLOW}], indirect=True)
def test_a_camera_that_leaves_with_its_job_queued_ahead_costs_the_others_nothing(
    pool: DetectorManager,
) -> None:
    """One worker (0.2 s per image), so the next camera's request waits in the detector's queue
    (its frames already read from its ring): its camera disconnects there. The request is dropped
    and its frames released, the others get their answers, and the camera comes back under the
    same name (its ring subscribed again)."""
    a, b, c = (DetectorClient("pool", name, (300, 300)) for name in ("a", "b", "c"))
    try:
        ra = a.submit([marker(11)])  # on the worker
        b.submit([marker(22)])  # waits in the detector's queue
        b.close()  # gone with its job queued
        rc = c.submit([marker(33)])
        assert _score(a.result(ra)) == pytest.approx(11 / 255)
        assert _score(c.result(rc)) == pytest.approx(33 / 255)
        b = DetectorClient("pool", "b", (300, 300))
        assert _score(b.detect([marker(44)])) == pytest.approx(44 / 255)
        stats = c.stats()
        # b's waiting request was dropped with its camera: nothing left waiting or running
        assert stats["running"] == 0 and stats["queued"] == 0 and stats["images"] >= 3
        assert pool.restarts == 0
    finally:
        for cl in (a, b, c):
            cl.close()


def test_a_worker_that_dies_restarts_the_detector_and_cameras_recover(pool: DetectorManager) -> None:
    client = DetectorClient("pool", "gate", (300, 300))
    try:
        first = pool.pid
        with pytest.raises(DetectorFailed, match="was pending"):
            client.detect([marker(5, DIE)])
        deadline = time.monotonic() + 60  # a restart on a loaded 2-core machine can take long
        while True:  # requests fail with a clear error until the new detector serves them
            try:
                assert _score(client.detect([marker(40)])) == pytest.approx(40 / 255)
                break
            except DetectorFailed:
                assert time.monotonic() < deadline
                time.sleep(0.1)  # the restart belongs to the manager's thread: nothing to wait on
        assert pool.restarts >= 1 and pool.pid != first
        assert pool.last_reason == f"exited with code {EXIT_WORKER_DIED}"
    finally:
        client.close()


def test_a_model_with_a_batch_axis_runs_the_requests_of_several_cameras_in_one_call(tmp_path: Path) -> None:
    spec = yolo_spec(yolo_onnx(tmp_path / "tiny.onnx"))  # dynamic batch axis
    # one worker and a batch window that only a full batch closes: the 4 requests must share one call
    settings = DetectorSettings(name="onnx", model=spec, workers=1, max_batch=4, max_wait_ms=10_000)
    manager = DetectorManager(settings, check_s=0.1)
    manager.start()
    clients = [DetectorClient("onnx", f"cam{i}", (64, 64)) for i in range(2)]
    try:
        values = {(0, 0): 255, (0, 1): 240, (1, 0): 225, (1, 1): 210}
        rids = {key: clients[key[0]].submit([np.full((64, 64, 3), v, np.uint8)]) for key, v in values.items()}
        for key, rid in rids.items():
            dets = clients[key[0]].result(rid)[0]
            assert dets[0].label == "person" and dets[0].score == pytest.approx(0.9 * values[key] / 255)
            assert clients[key[0]].last_batch == 4
        stats = clients[0].stats()
        assert stats["runs_batches"] and stats["batches"] == 1 and stats["max_batch_seen"] == 4
    finally:
        for c in clients:
            c.close()
        manager.stop()


def test_default_workers_one_per_core_shared_among_processes() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == min(cores, MAX_WORKERS)
    assert default_workers(processes=2) == max(1, min(cores // 2, MAX_WORKERS))
    assert default_workers(processes=10_000) == 1


def test_batching_model_on_two_workers_answers_every_request_of_every_camera_with_its_own(
    tmp_path: Path,
) -> None:
    """Two workers take batches from the queue at once, 3 cameras keep 2 requests in flight:
    every answer is its own image's, whatever batch and worker ran it."""
    spec = yolo_spec(yolo_onnx(tmp_path / "tiny.onnx"))
    settings = DetectorSettings(name="onnx2", model=spec, workers=2, max_batch=4, max_wait_ms=50)
    manager = DetectorManager(settings, check_s=0.1)
    manager.start()
    clients = [DetectorClient("onnx2", f"cam{i}", (64, 64)) for i in range(3)]
    try:
        batches: set[int] = set()
        for k in range(8):
            sent = {}
            for c, cl in enumerate(clients):
                for j in range(2):
                    value = 200 + 9 * (2 * c + j) + k % 2  # distinct within a round, above the threshold
                    sent[(c, j)] = (cl.submit([np.full((64, 64, 3), value, np.uint8)]), value)
            for (c, _), (rid, value) in sent.items():
                dets = clients[c].result(rid)[0]
                assert dets[0].score == pytest.approx(0.9 * value / 255)
                batches.add(clients[c].last_batch)
        assert manager.restarts == 0
        assert max(batches) > 1  # real batches formed
    finally:
        for cl in clients:
            cl.close()
        manager.stop()
