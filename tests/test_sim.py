"""The camera simulator against a real gst-rtsp-server, with PyAV (FFmpeg) as the client."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import av
import numpy as np
import psutil
import pytest
import typer
from typer.testing import CliRunner

from camfleet.cli import sim as sim_cli
from camfleet_testing.sim import APT_HINT, CameraSpec, Scene, SimError, SimServer, rgb_to_i420

pytestmark = [pytest.mark.process, pytest.mark.beside]

SMALL = {"width": 320, "height": 180, "fps": 15.0, "bitrate_kbps": 300, "gop": 15}


def av_options(transport: str = "tcp", timeout_s: float = 3.0) -> dict[str, str]:
    # `timeout` is FFmpeg's socket timeout in microseconds (`stimeout` is ignored by this FFmpeg);
    # a short probe makes av.open return as soon as the first frames are in (~0.1 s instead of ~2 s).
    return {
        "rtsp_transport": transport,
        "timeout": str(int(timeout_s * 1e6)),
        "analyzeduration": "100000",
        "probesize": "32768",
    }


def open_stream(url: str, transport: str = "tcp", timeout_s: float = 3.0) -> Any:
    return av.open(url, options=av_options(transport, timeout_s), timeout=(timeout_s + 2, timeout_s + 2))


def decode_some(url: str, n: int, transport: str = "tcp") -> tuple[str, list[tuple[int, int]]]:
    with open_stream(url, transport) as container:
        stream = container.streams.video[0]
        sizes = []
        for frame in container.decode(stream):
            sizes.append((frame.width, frame.height))
            if len(sizes) >= n:
                break
        return stream.codec_context.name, sizes


class Reader(threading.Thread):
    """Decode a stream in the background, recording every frame; wait on conditions with bounded time."""

    def __init__(self, url: str, transport: str = "tcp", timeout_s: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.url, self.transport, self.timeout_s = url, transport, timeout_s
        self.cond = threading.Condition()
        self.frames: list[tuple[float, int, int]] = []  # (monotonic time, width, height)
        self.decode_errors = 0
        self.error: BaseException | None = None
        self.done = False
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with open_stream(self.url, self.transport, self.timeout_s) as container:
                for packet in container.demux(video=0):
                    if self._halt.is_set():
                        return
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:  # a corrupted packet: the next ones decode again
                        with self.cond:
                            self.decode_errors += 1
                        continue
                    with self.cond:
                        self.frames.extend((time.monotonic(), f.width, f.height) for f in frames)
                        self.cond.notify_all()
        except BaseException as exc:
            self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Reader], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def count(self) -> int:
        with self.cond:
            return len(self.frames)

    def close(self) -> None:
        self._halt.set()
        self.join(self.timeout_s + 5)
        assert not self.is_alive()


@pytest.fixture
def reader() -> Iterator[Callable[..., Reader]]:
    started: list[Reader] = []

    def start(url: str, transport: str = "tcp", timeout_s: float = 3.0) -> Reader:
        r = Reader(url, transport, timeout_s)
        r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    specs = [
        CameraSpec(name="h264", codec="h264", **SMALL),
        CameraSpec(name="h265", codec="h265", seed=1, **SMALL),
        CameraSpec(name="stall", codec="h264", **SMALL),
        CameraSpec(name="resize", codec="h264", **SMALL),
        CameraSpec(name="corrupt", codec="h264", **SMALL),
    ]
    with SimServer(specs, port=0) as server:
        yield server


def server_pids() -> set[int]:
    """Simulator server processes started by this test process (the module's `sim` fixture runs one)."""
    pids = set()
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "_gst_server.py" in " ".join(p.cmdline()):
                pids.add(p.pid)
    return pids


# -- scene --------------------------------------------------------------------------------------------


def test_scene_is_deterministic_with_boxes_inside_the_frame() -> None:
    scene = Scene(width=320, height=180, seed=0, objects=("person", "cat", "motorcycle"))
    a, b = scene.render_i420(7), Scene(320, 180, seed=0).render_i420(7)
    assert a.shape == (270, 320) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(scene.render_i420(7), scene.render_i420(30))  # things move
    assert not np.array_equal(Scene(320, 180, seed=1).render_i420(7), a)  # the seed matters

    rgb = scene.render_rgb(7)
    assert rgb.shape == (180, 320, 3)
    y, u, _v = rgb_to_i420(rgb)  # the I420 frame is the RGB frame, converted
    assert np.abs(a[:180].astype(int) - y).max() <= 1
    assert np.abs(a[180:].reshape(-1)[: 90 * 160].reshape(90, 160).astype(int) - u).max() <= 1

    for i in (0, 7, 100, 1000):
        boxes = scene.boxes(i)
        assert sorted(b[0] for b in boxes) == ["cat", "motorcycle", "person"]
        for _label, x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 180
        for j, p in enumerate(boxes):  # lanes never overlap: no object hides another
            for q in boxes[j + 1 :]:
                assert p[4] <= q[2] or q[4] <= p[2]
    person = next(b for b in scene.boxes(0) if b[0] == "person")
    assert 0.35 <= (person[4] - person[2]) / 180 <= 0.6  # big enough for a detector
    # A box holds the photograph, not the background: its pixels differ from the empty backdrop.
    _, x0, y0, x1, y1 = person
    empty = scene._bg_rgb[y0:y1, x0:x1].astype(int)
    assert np.abs(scene.render_rgb(0)[y0:y1, x0:x1].astype(int) - empty).mean() > 20
    # The same scene at another size moves the same way, scaled.
    big = Scene(640, 360, seed=0).boxes(7)
    assert [(b[0], round(b[1] / 2 / 10)) for b in big] == [(b[0], round(b[1] / 10)) for b in scene.boxes(7)]


def test_scene_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="even"):
        Scene(321, 180)
    with pytest.raises(ValueError, match="unknown scene object"):
        Scene(320, 180, objects=("car",))
    with pytest.raises(ValueError, match="codec"):
        CameraSpec(codec="vp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        SimServer([CameraSpec("a"), CameraSpec("a")])
    with pytest.raises(ValueError, match="both"):
        SimServer([CameraSpec("a")], user="admin")


# -- serving --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize(("camera", "codec"), [("h264", "h264"), ("h265", "hevc")])
def test_serves_h264_and_h265_over_tcp_and_udp(
    sim: SimServer, camera: str, codec: str, transport: str
) -> None:
    assert sim.url(camera) == f"rtsp://127.0.0.1:{sim.port}/{camera}"
    with open_stream(sim.url(camera), transport) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        frames = []
        for frame in container.decode(stream):
            frames.append(frame)
            if len(frames) >= 8:
                break
        sent = sim.frames_sent(camera)
    assert [(f.width, f.height) for f in frames] == [(320, 180)] * 8
    # What arrives is the scene: the last frame matches one of the frames rendered lately, to within the
    # encoder's loss (mean absolute error of a few levels; a wrong colour conversion would be far off).
    seed = 1 if camera == "h265" else 0
    scene = Scene(320, 180, seed=seed)
    got = frames[-1].to_ndarray(format="rgb24").astype(np.int16)
    errors = [np.abs(scene.render_rgb(i) - got).mean() for i in range(max(0, sent - 60), sent + 10)]
    assert min(errors) < 6, min(errors)


def test_feeders_pace_frames_at_the_configured_rate(sim: SimServer) -> None:
    n0, t0 = sim.frames_sent("h264"), time.monotonic()
    deadline = t0 + 5
    while sim.frames_sent("h264") < n0 + 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    rate = (sim.frames_sent("h264") - n0) / (time.monotonic() - t0)
    assert 10 <= rate <= 20


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_credentials_are_required(auth: Literal["basic", "digest"]) -> None:
    password = "p@ss w:rd/1%"  # characters that must be percent-encoded in a URL
    with SimServer([CameraSpec("cam0", **SMALL)], user="admin", password=password, auth=auth) as server:
        url = server.url("cam0")
        assert url.startswith("rtsp://admin:p%40ss%20w%3Ard%2F1%25@127.0.0.1:")
        assert decode_some(url, 2)[1] == [(320, 180)] * 2
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_stream(server.url("cam0", password="wrong"))
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_stream(f"rtsp://127.0.0.1:{server.port}/cam0")


def test_tls_serves_rtsps_with_a_private_throwaway_certificate() -> None:
    with SimServer([CameraSpec("cam0", **SMALL)], tls=True) as server:
        url = server.url("cam0")
        assert url == f"rtsps://127.0.0.1:{server.port}/cam0"
        cert = server.tls_certificate
        assert cert is not None
        tls_dir = cert.parent
        assert sorted(p.name for p in tls_dir.iterdir()) == ["cert.pem", "key.pem"]
        assert tls_dir.stat().st_mode & 0o777 == 0o700
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in tls_dir.iterdir())
        pem = cert.read_bytes()
        assert pem.startswith(b"-----BEGIN CERTIFICATE-----") and b"PRIVATE KEY" not in pem
        # FFmpeg accepts the self-signed certificate (it verifies only with tls_verify=1)
        assert decode_some(url, 2)[1] == [(320, 180)] * 2
        with pytest.raises(av.error.FFmpegError):  # the port speaks TLS only
            open_stream(url.replace("rtsps://", "rtsp://", 1), timeout_s=2.0)
        server.stop()
        server.start()  # a restart keeps the certificate
        assert cert.read_bytes() == pem
        assert decode_some(url, 2)[1] == [(320, 180)] * 2
    assert not tls_dir.exists() and server.tls_certificate is None


def test_tls_without_openssl_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no openssl command to be found
    before = server_pids()
    with pytest.raises(SimError, match="openssl") as exc, SimServer([CameraSpec("a", **SMALL)], tls=True):
        pass
    assert "apt-get install" in str(exc.value)
    assert server_pids() == before


# -- faults ---------------------------------------------------------------------------------------------


def test_stall_stops_frames_but_keeps_the_session(sim: SimServer, reader: Callable[..., Reader]) -> None:
    patient = reader(sim.url("stall"), timeout_s=10.0)
    impatient = reader(sim.url("stall"), timeout_s=1.0)
    assert patient.wait_for(lambda r: r.count() >= 5, 10) and impatient.wait_for(lambda r: r.count() >= 5, 10)
    sim.stall("stall")
    try:
        # The client with a 1 s socket timeout gives up: a read with a timeout raises.
        assert impatient.wait_for(lambda r: r.done, 8), "a stalled stream must time the reader out"
        assert isinstance(impatient.error, av.error.TimeoutError), impatient.error
        sent, seen = sim.frames_sent("stall"), patient.count()
        assert not patient.wait_for(lambda r: r.count() > seen + 1, 1.0)  # nothing (one in flight at most)
        assert sim.frames_sent("stall") == sent
    finally:
        sim.resume("stall")
    # The other client's session survived the stall: frames flow again on the same connection.
    assert patient.wait_for(lambda r: r.count() >= seen + 10, 10)
    assert not patient.done


def test_resize_mid_stream(sim: SimServer, reader: Callable[..., Reader]) -> None:
    r = reader(sim.url("resize"))
    assert r.wait_for(lambda r: r.count() >= 3, 10)
    try:
        sim.resize("resize", 480, 270)
        assert r.wait_for(lambda r: r.frames[-1][1:] == (480, 270), 10), r.frames[-3:]
        sim.resize("resize", 160, 90)
        assert r.wait_for(lambda r: r.frames[-1][1:] == (160, 90), 10), r.frames[-3:]
    finally:
        sim.resize("resize", 320, 180)
    assert not r.done and r.error is None
    assert decode_some(sim.url("resize"), 2)[1] == [(320, 180)] * 2  # a new client gets the current size


def test_corrupted_packets_keep_decoding(sim: SimServer, reader: Callable[..., Reader]) -> None:
    r = reader(sim.url("corrupt"))
    assert r.wait_for(lambda r: r.count() >= 3, 10)
    before = sim.server_stats("corrupt")["corrupted"]
    sim.corrupt("corrupt", 0.05)
    try:
        n = r.count()
        assert r.wait_for(lambda r: r.count() >= n + 30, 15), (r.count() - n, r.error)
        # packets were really damaged (random at 5 %: give it up to 10 s of packets)
        deadline = time.monotonic() + 10
        while sim.server_stats("corrupt")["corrupted"] <= before and time.monotonic() < deadline:
            r.wait_for(lambda r: False, 0.2)  # let more packets flow
        assert sim.server_stats("corrupt")["corrupted"] > before
        assert not r.done and r.error is None  # and decoding went on throughout
    finally:
        sim.corrupt("corrupt", 0.0)
    assert not r.done and r.error is None


def test_stop_refuses_connections_and_start_serves_again_on_the_same_port(
    reader: Callable[..., Reader],
) -> None:
    before = server_pids()
    with SimServer([CameraSpec("cam0", codec="h265", **SMALL)], port=0) as server:
        port, url = server.port, server.url("cam0")
        r = reader(url)
        assert r.wait_for(lambda r: r.count() >= 3, 10)
        server.stop()
        assert not server.running and server_pids() == before
        assert r.wait_for(lambda r: r.done, 10)  # the connected client is dropped
        with pytest.raises(av.error.ConnectionRefusedError):
            open_stream(url)
        sent = server.frames_sent("cam0")
        server.start()
        assert server.running and server.port == port
        assert decode_some(url, 3)[1] == [(320, 180)] * 3
        assert server.frames_sent("cam0") > sent


def test_everything_shuts_down_cleanly_even_on_exceptions() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = set(threading.enumerate())
    pids_before = server_pids()
    server = SimServer([CameraSpec("a", **SMALL), CameraSpec("b", codec="h265", **SMALL)])
    with pytest.raises(RuntimeError, match="boom"), server:
        assert len(server_pids() - pids_before) == 1
        raise RuntimeError("boom")
    assert server_pids() == pids_before
    assert set(threading.enumerate()) <= threads_before
    assert len(os.listdir("/proc/self/fd")) == fds_before
    with pytest.raises(SimError, match="closed"):
        server.start()


def test_missing_server_python_says_what_to_install(tmp_path: Any) -> None:
    before = server_pids()
    with pytest.raises(SimError) as exc:
        SimServer([CameraSpec("a", **SMALL)], server_python=str(tmp_path / "python3")).__enter__()
    assert APT_HINT in str(exc.value)
    # An interpreter without PyGObject (this virtualenv's) fails with the same advice.
    with pytest.raises(SimError) as exc, SimServer([CameraSpec("a", **SMALL)], server_python=sys.executable):
        pass
    assert "PyGObject" in str(exc.value) and APT_HINT in str(exc.value)
    assert server_pids() == before


# -- CLI -------------------------------------------------------------------------------------------------


def test_cli_serves_prints_masked_urls_and_takes_commands() -> None:
    app = typer.Typer()
    app.command()(sim_cli.sim)
    result = CliRunner().invoke(
        app,
        ["--cameras", "2", "--codec", "h264,h265", "--width", "320", "--height", "180", "--port", "0",
         "--user", "admin", "--password", "s3cret", "--duration", "20", "--interactive"],
        input="stall cam0\nresize cam1 160x90\ncorrupt cam1 0.1\nbogus\nrestart\nresume cam0\nquit\n",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "s3cret" not in out
    assert "h264  rtsp://admin:***@127.0.0.1:" in out and "/cam0" in out
    assert "h265  rtsp://admin:***@127.0.0.1:" in out and "/cam1" in out
    for ok in ("stall cam0", "resize cam1 160x90", "corrupt cam1 0.1", "restart", "resume cam0"):
        assert f"ok: {ok}" in out
    assert "? bogus" in out and "stopped." in out


def test_cli_tls_prints_rtsps_urls() -> None:
    app = typer.Typer()
    app.command()(sim_cli.sim)
    result = CliRunner().invoke(
        app,
        ["--cameras", "1", "--width", "320", "--height", "180", "--port", "0", "--tls",
         "--user", "admin", "--password", "s3cret", "--duration", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "h264  rtsps://admin:***@127.0.0.1:" in result.output and "s3cret" not in result.output
    assert "TLS certificate (self-signed, deleted on exit): " in result.output


def test_cli_command_is_registered_and_runs() -> None:
    help_ = subprocess.run([sys.executable, "-m", "camfleet.cli", "sim", "--help"],
                           capture_output=True, text=True, timeout=60, check=False)
    if help_.returncode != 0:
        pytest.skip("`camfleet sim` is not registered in camfleet.cli.main yet")
    r = subprocess.run(
        [sys.executable, "-m", "camfleet.cli", "sim", "--cameras", "1", "--width", "320", "--height", "180",
         "--port", "0", "--duration", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "rtsp://127.0.0.1:" in r.stdout and "fps" in r.stdout


def test_cli_without_the_dev_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("camfleet_testing", "camfleet_testing.sim", "camfleet_testing.sim.cli"):
        monkeypatch.setitem(sys.modules, name, None)  # as if camfleet-testing were not installed
    app = typer.Typer()
    app.command()(sim_cli.sim)
    result = CliRunner().invoke(app, ["--duration", "1"])
    assert result.exit_code == 2
    assert "development package" in result.output and "pip install -e ./testing" in result.output
