"""The shared detector service: real processes, real model, crashes and stuck inferences."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

from camfleet.detect.models import default_model_spec
from camfleet.detect.protocol import Reader, encode, send, socket_path
from camfleet.detect.service import DetectorClient, DetectorFailed, DetectorSettings
from camfleet.runtime.detectors import DetectorManager
from tests.support.detect_helpers import marker

pytestmark = pytest.mark.process


def astronaut_300() -> np.ndarray:
    return (resize(data.astronaut(), (300, 300)) * 255).astype(np.uint8)


def detect_eventually(client: DetectorClient, image: np.ndarray, timeout: float = 30) -> list[object]:
    """Retry while the detector restarts (the client says so with DetectorFailed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.detect([image])[0]  # type: ignore[return-value]
        except DetectorFailed as exc:
            assert "detector 'test'" in str(exc)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the restart belongs to the manager's thread: nothing to wait on


@pytest.fixture
def manager(request: pytest.FixtureRequest) -> Iterator[DetectorManager]:
    overrides = getattr(request, "param", {})
    settings = DetectorSettings(name="test", model=default_model_spec(), **overrides)
    mgr = DetectorManager(settings, check_s=0.1)
    mgr.start()
    yield mgr
    mgr.stop()


def test_four_cameras_share_one_detector_and_all_get_their_results(manager: DetectorManager) -> None:
    clients = [DetectorClient("test", f"cam{i}", (300, 300)) for i in range(4)]
    image = astronaut_300()
    results: dict[int, list[object]] = {}
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait(10)
        for _ in range(3):
            results.setdefault(i, []).append(clients[i].detect([image])[0])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sorted(results) == [0, 1, 2, 3]
        for per_camera in results.values():
            for dets in per_camera:
                assert any(d.label == "person" and d.score > 0.5 for d in dets)  # type: ignore[attr-defined]
        stats = clients[0].stats()
        assert set(stats["cameras"]) == {"cam0", "cam1", "cam2", "cam3"}
        assert all(c["images"] == 3 for c in stats["cameras"].values())
        assert all(c["requests_per_s"] > 0 for c in stats["cameras"].values())
        assert stats["mean_infer_ms"] > 0 and stats["queued"] == 0
        # a batch-1 model: one request per job, shared out among the workers (batches: test_detect_pool.py)
        assert stats["max_batch_seen"] == 1 and not stats["runs_batches"] and stats["workers"] >= 1
        assert manager.restarts == 0
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize(
    "manager", [{"factory": "tests.support.detect_helpers:marker_runtime"}], indirect=True
)
def test_killed_detector_is_restarted_and_cameras_recover(manager: DetectorManager) -> None:
    client = DetectorClient("test", "door", (300, 300))
    try:
        assert client.detect([marker(100)])[0][0].score == pytest.approx(100 / 255)
        first = manager.pid
        assert first is not None
        os.kill(first, 9)
        # requests fail with a clear error until the new detector serves them
        got = detect_eventually(client, marker(50))
        assert got[0].score == pytest.approx(50 / 255)  # type: ignore[attr-defined]
        assert manager.restarts >= 1 and manager.pid != first
        assert "SIGKILL" in manager.last_reason  # the supervisor says how it ended
    finally:
        client.close()


@pytest.mark.parametrize(
    "manager", [{"factory": "tests.support.detect_helpers:marker_runtime", "stuck_s": 1.0, "workers": 3}],
    indirect=True,
)
def test_stuck_detector_is_restarted_and_pending_request_fails_clearly(manager: DetectorManager) -> None:
    client = DetectorClient("test", "gate", (300, 300), timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(DetectorFailed, match=r"request \d+ of camera 'gate' was pending"):
            blocker = marker(0)
            blocker[0, 0, 0] = 255  # MarkerRuntime blocks on this pixel
            client.detect([blocker])
        assert time.monotonic() - t0 < 10
        assert "stuck" in manager.last_reason
        got = detect_eventually(client, marker(30))
        assert got[0].score == pytest.approx(30 / 255)  # type: ignore[attr-defined]
        assert manager.restarts == 1
    finally:
        client.close()


@pytest.mark.parametrize(
    "manager",
    [{"factory": "tests.support.detect_helpers:slow_marker_runtime", "max_batch": 1, "max_inflight": 2,
      "workers": 1}],
    indirect=True,
)
def test_inflight_limit_and_round_robin_between_cameras(manager: DetectorManager) -> None:
    """Camera A queues three requests at once, camera B one: A's third is refused,
    and B is served before A's second (round-robin), not after."""
    a = DetectorClient("test", "a", (300, 300))
    b = DetectorClient("test", "b", (300, 300))
    socks = []
    try:
        for cl in (a, b):
            cl._connect()
        order: list[tuple[str, int]] = []
        replies = {}
        for cl, count in ((a, 3), (b, 1)):
            seqs = [cl._ring.publish(marker(10 + i)) for i in range(count)]
            sock = cl._sock
            assert sock is not None
            # one write: the requests arrive together, as from a camera flooding the detector
            sock.sendall(b"".join(
                encode({"op": "detect", "id": i + 1, "count": 1, "last_seq": seq})
                for i, seq in enumerate(seqs)
            ))
            socks.append((cl.camera, sock, count))
        for name, sock, count in socks:
            reader = Reader()
            got: list[dict[str, object]] = []
            sock.settimeout(10)
            while len(got) < count:
                got += reader.feed(sock.recv(65536))
            replies[name] = got
        refused = [r for r in replies["a"] if r.get("error")]
        assert len(refused) == 1 and "more than 2 requests in flight" in str(refused[0]["error"])
        for name, got in replies.items():
            order += [(name, int(r["batch_no"])) for r in got if not r.get("error")]  # type: ignore[call-overload]
        order.sort(key=lambda x: x[1])
        assert [n for n, _ in order] == ["a", "b", "a"]
    finally:
        a.close()
        b.close()


def test_socket_is_owner_only(manager: DetectorManager) -> None:
    mode = os.stat(socket_path("test")).st_mode & 0o777
    assert mode == 0o600
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path("test")))
        send(s, {"op": "nonsense"})
        s.settimeout(10)
        assert Reader().feed(s.recv(65536))[0]["op"] == "error"
