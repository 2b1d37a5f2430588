"""RTSP over TLS (rtsps://) end to end: the simulator serves it, PyAV decodes it, camfleet ingests it.

FFmpeg (PyAV's) does not verify the server's certificate unless asked
(``tls_verify=1``), so the simulator's self-signed certificate is accepted as
is; rtsps also makes FFmpeg use interleaved RTP over the TLS connection (TCP)
whatever ``rtsp_transport`` says.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import pytest

from camfleet import framebus as fb
from camfleet.ingest import (
    ErrorKind,
    IngestConfig,
    IngestError,
    IngestState,
    IngestWorker,
    SourceOptions,
    TlsOptions,
)
from camfleet_testing.sim import CameraSpec, SimServer

pytestmark = [pytest.mark.process, pytest.mark.beside]

PASSWORD = "pw-XYZ"
SPEC = CameraSpec(name="tls", codec="h264", width=320, height=180, fps=15, bitrate_kbps=400, gop=15)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer([SPEC], port=0, tls=True, user="admin", password=PASSWORD) as server:
        yield server


def av_open(url: str, extra: dict[str, str] | None = None, timeout_s: float = 5.0) -> Any:
    # `timeout`: FFmpeg's socket timeout (µs; over TLS it surfaces as EIO, not ETIMEDOUT); a short probe
    # returns as soon as the first frames are in.
    options = {"rtsp_transport": "tcp", "timeout": str(int(timeout_s * 1e6)), "analyzeduration": "100000",
               "probesize": "32768", **(extra or {})}
    return av.open(url, options=options, timeout=(timeout_s + 1, timeout_s + 1))


def decode(url: str, n: int, extra: dict[str, str] | None = None, attempts: int = 3) -> list[tuple[int, int]]:
    # Over TLS FFmpeg reports any read hiccup as EIO (a loaded machine stalls the simulator for a
    # moment); a real client reconnects, and so does this one, a bounded number of times.
    for attempt in range(attempts):
        try:
            with av_open(url, extra) as container:
                sizes = []
                for frame in container.decode(video=0):
                    sizes.append((frame.width, frame.height))
                    if len(sizes) >= n:
                        break
                return sizes
        except av.error.OSError as exc:
            if exc.errno != errno.EIO or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class Running:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread
    events: queue.Queue[tuple[IngestState, IngestError | None]] = field(default_factory=queue.Queue)

    def wait_state(self, state: IngestState, timeout: float) -> IngestError | None:
        """The error that came with ``state`` once the worker enters it; fails after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while (remaining := end - time.monotonic()) > 0:
            try:
                got, err = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if got == state:
                return err
        raise AssertionError(f"no {state.value} within {timeout} s; now {self.worker.status()}")


@pytest.fixture
def ingest() -> Iterator[list[Running]]:
    """Start ingest workers (in threads) with ``start(url, key)``; all are stopped and joined afterwards."""
    started: list[Running] = []
    yield started
    for r in started:
        r.stop.set()
    for r in started:
        r.thread.join(10)
        assert not r.thread.is_alive(), "ingest loop did not stop"


def start(started: list[Running], sim: SimServer, url: str, key: str) -> Running:
    # camfleet verifies certificates: trust the simulator's self-signed one (see test_ingest_tls.py)
    tls = TlsOptions(ca_file=str(sim.tls_certificate))
    cfg = IngestConfig(url=url, key=key, source=SourceOptions(open_timeout=5, stall_timeout=3, tls=tls),
                       backoff_initial=0.2, backoff_max=1.0)
    events: queue.Queue[tuple[IngestState, IngestError | None]] = queue.Queue()
    worker = IngestWorker(cfg, on_state=lambda s, e: events.put((s, e)))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name=f"ingest-{key}", daemon=True)
    r = Running(worker, stop, thread, events)
    started.append(r)
    thread.start()
    return r


def test_pyav_decodes_rtsps(sim: SimServer) -> None:
    url = sim.url("tls")
    assert url == f"rtsps://admin:{PASSWORD}@127.0.0.1:{sim.port}/tls"
    assert decode(url, 5) == [(320, 180)] * 5
    with pytest.raises(av.error.HTTPUnauthorizedError):  # the credentials are checked inside TLS
        av_open(sim.url("tls", password="wrong"))


def test_certificate_verification_is_off_by_default_and_works_with_the_sims_ca(sim: SimServer) -> None:
    cert = sim.tls_certificate
    assert cert is not None and cert.is_file()
    # FFmpeg's default (tls_verify=0) accepted the self-signed certificate above; verifying needs the CA.
    with pytest.raises(av.error.OSError):
        av_open(sim.url("tls"), {"tls_verify": "1"})
    assert decode(sim.url("tls"), 2, {"tls_verify": "1", "ca_file": str(cert)}) == [(320, 180)] * 2


def test_plain_rtsp_to_the_tls_port_fails_fast(sim: SimServer) -> None:
    started = time.monotonic()
    with pytest.raises(av.error.FFmpegError):  # the server's TLS handshake fails on plain text and hangs up
        av_open(sim.url("tls").replace("rtsps://", "rtsp://", 1), timeout_s=3.0)
    assert time.monotonic() - started < 2.5


def test_ingest_streams_rtsps_into_the_framebus(sim: SimServer, ingest: list[Running]) -> None:
    r = start(ingest, sim, sim.url("tls"), "tls")
    r.wait_state(IngestState.STREAMING, 10)
    with fb.subscribe("tls", connect_timeout=10) as sub:
        sizes = []
        for _ in range(5):
            with sub.next(timeout=5) as frame:
                sizes.append((frame.format.width, frame.format.height))
    assert sizes == [(320, 180)] * 5
    status = r.worker.status()
    assert status.state == IngestState.STREAMING
    assert PASSWORD not in repr(status)


def test_ingest_wrong_password_over_rtsps_is_unauthorized(sim: SimServer, ingest: list[Running]) -> None:
    r = start(ingest, sim, sim.url("tls", password="not-" + PASSWORD), "tls-auth")
    err = r.wait_state(IngestState.BACKOFF, 10)
    assert err is not None and err.kind == ErrorKind.UNAUTHORIZED, err
    assert PASSWORD not in str(err)


def test_stall_over_tls_is_classified_and_recovers(sim: SimServer, ingest: list[Running]) -> None:
    """Over TLS FFmpeg reports a silent server as EIO: camfleet calls it a stall or a lost
    connection (never an unknown error) and reconnects once the camera talks again."""
    r = start(ingest, sim, sim.url("tls"), "tls-stall")
    r.wait_state(IngestState.STREAMING, 10)
    sim.stall("tls")
    try:
        r.wait_state(IngestState.BACKOFF, 15)
        kind = r.worker.status().last_error_kind
        assert kind in (ErrorKind.STALLED.value, ErrorKind.ENDED.value), r.worker.status()
    finally:
        sim.resume("tls")
    r.wait_state(IngestState.STREAMING, 20)
