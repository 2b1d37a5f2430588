"""Cameras over TLS are verified: rtsps:// (the simulator) and https:// with a test CA.

A throw-away CA signs the server certificate. With ``tls.ca_file`` naming
that CA the stream opens; with the default settings (verification on, the
system's trust store) it is refused with an error that says how to trust the
camera; ``tls.verify: false`` accepts any certificate.
"""

from __future__ import annotations

import contextlib
import http.server
import queue
import ssl
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from camfleet.cli.main import app
from camfleet.ingest import (
    ErrorKind,
    IngestConfig,
    IngestError,
    IngestState,
    IngestWorker,
    SourceOptions,
    TlsOptions,
)
from camfleet.ingest.source import open_source
from camfleet_testing.sim import CameraSpec, SimServer
from tests.support.tls_ca import TlsFiles, make_ca_and_server

pytestmark = [pytest.mark.process, pytest.mark.beside]

PASSWORD = "pw-TLS-123"
SPEC = CameraSpec(name="tls", codec="h264", width=320, height=180, fps=15, bitrate_kbps=400, gop=15)
OPTS = {"open_timeout": 5.0, "stall_timeout": 5.0}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca_and_server(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca_and_server(tmp_path_factory.mktemp("other-ca"), ca_name="another CA")


@pytest.fixture(scope="module")
def sim(ca: TlsFiles) -> Iterator[SimServer]:
    with SimServer([SPEC], port=0, tls_files=(ca.cert, ca.key), user="admin", password=PASSWORD) as server:
        yield server


def first_frame_size(url: str, opts: SourceOptions) -> tuple[int, int]:
    """Open ``url`` the way ingest does and decode one frame."""
    container = open_source(url, opts)
    try:
        frame = next(container.decode(video=0))
        return frame.width, frame.height
    finally:
        container.close()


def assert_untrusted(err: IngestError, reason: str) -> None:
    text = str(err)
    assert err.kind == ErrorKind.UNTRUSTED, text
    assert reason in text, text
    assert "tls.ca_file" in text and "tls.verify: false" in text, text
    assert PASSWORD not in text


# ---- rtsps:// ---------------------------------------------------------------------------------------


def test_rtsps_verified_with_the_cameras_ca(sim: SimServer, ca: TlsFiles) -> None:
    opts = SourceOptions(**OPTS, tls=TlsOptions(ca_file=str(ca.ca)))
    assert first_frame_size(sim.url("tls"), opts) == (320, 180)
    # the certificate names localhost too: verification checks the host name, not just the chain
    assert first_frame_size(sim.url("tls").replace("127.0.0.1", "localhost"), opts) == (320, 180)


def test_rtsps_unknown_ca_is_refused_by_default_with_how_to_trust_it(sim: SimServer) -> None:
    with pytest.raises(IngestError) as info:
        open_source(sim.url("tls"), SourceOptions(**OPTS))
    assert_untrusted(info.value, "unable to get local issuer certificate")


def test_ingest_worker_reports_the_untrusted_camera_and_keeps_retrying(sim: SimServer) -> None:
    events: queue.Queue[tuple[IngestState, IngestError | None]] = queue.Queue()
    cfg = IngestConfig(url=sim.url("tls"), key="tls-untrusted", source=SourceOptions(**OPTS),
                       backoff_initial=0.2, backoff_max=0.5)
    worker = IngestWorker(cfg, on_state=lambda s, e: events.put((s, e)))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        while True:
            state, err = events.get(timeout=15)
            assert state != IngestState.STREAMING, "an untrusted camera was streamed"
            if err is not None:
                break
        assert_untrusted(err, "unable to get local issuer certificate")
        assert worker.status().last_error_kind == ErrorKind.UNTRUSTED.value
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_rtsps_another_ca_is_refused(sim: SimServer, other_ca: TlsFiles) -> None:
    with pytest.raises(IngestError) as info:
        open_source(sim.url("tls"), SourceOptions(**OPTS, tls=TlsOptions(ca_file=str(other_ca.ca))))
    assert_untrusted(info.value, "unable to get local issuer certificate")


def test_rtsps_verify_false_accepts_any_certificate(sim: SimServer) -> None:
    assert first_frame_size(sim.url("tls"), SourceOptions(**OPTS, tls=TlsOptions(verify=False))) == (320, 180)


def test_missing_ca_file_is_named(sim: SimServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(IngestError) as info:
        open_source(sim.url("tls"), SourceOptions(**OPTS, tls=TlsOptions(ca_file=str(missing))))
    assert info.value.kind == ErrorKind.NO_SUCH_FILE
    assert f"tls.ca_file {missing}" in str(info.value)


def test_ffmpeg_options() -> None:
    assert TlsOptions().ffmpeg_options() == {"tls_verify": "1"}
    assert TlsOptions(ca_file="/ca.pem").ffmpeg_options() == {"tls_verify": "1", "ca_file": "/ca.pem"}
    assert TlsOptions(verify=False).ffmpeg_options() == {"tls_verify": "0"}


# ---- https:// ---------------------------------------------------------------------------------------


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


def _write_clip(path: Path, frames: int = 10) -> None:
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 20, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def https_url(ca: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    _write_clip(root / "clip.mkv")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.cert, ca.key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(root)))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/clip.mkv"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def stream_size(url: str, opts: SourceOptions) -> tuple[int, int]:
    """Open ``url`` the way ingest does; the size its header announces (the TLS handshake is done)."""
    with contextlib.closing(open_source(url, opts)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height


def test_https_verified_refused_and_unverified(https_url: str, ca: TlsFiles) -> None:
    assert stream_size(https_url, SourceOptions(**OPTS, tls=TlsOptions(ca_file=str(ca.ca)))) == (160, 120)
    with pytest.raises(IngestError) as info:
        stream_size(https_url, SourceOptions(**OPTS))
    assert_untrusted(info.value, "unable to get local issuer certificate")
    assert stream_size(https_url, SourceOptions(**OPTS, tls=TlsOptions(verify=False))) == (160, 120)


def test_cli_probe_verifies_and_takes_the_ca(sim: SimServer, ca: TlsFiles) -> None:
    url = sim.url("tls")
    refused = CliRunner().invoke(app, ["probe", url, "--timeout", "5", "--seconds", "1"])
    assert refused.exit_code == 2
    assert "TLS certificate not trusted" in refused.output and "--tls-ca-file" in refused.output
    assert PASSWORD not in refused.output
    trusted = CliRunner().invoke(app, ["probe", url, "--timeout", "5", "--seconds", "1",
                                       "--tls-ca-file", str(ca.ca)])
    assert trusted.exit_code == 0, trusted.output
    assert "resolution 320x180" in trusted.output
    unverified = CliRunner().invoke(app, ["probe", url, "--timeout", "5", "--seconds", "1",
                                          "--no-tls-verify"])
    assert unverified.exit_code == 0, unverified.output
