"""``camfleet probe`` and ``camfleet ingest``: one camera, for debugging and for decode-once sharing."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
import time
from typing import Literal

import typer

from camfleet.framebus import PixelFormat
from camfleet.ingest import (
    IngestConfig,
    IngestError,
    IngestState,
    IngestWorker,
    OutputSpec,
    SourceOptions,
    TlsOptions,
    probe,
)
from camfleet.redact import mask_url

from .logs import setup_logging

PROBE_URL_ENV = "CAMFLEET_PROBE_URL"
"""Environment variable ``camfleet probe`` reads the camera URL from when none is given."""
INGEST_URL_ENV = "CAMFLEET_INGEST_URL"
"""Environment variable ``camfleet ingest`` reads the camera URL from when none is given."""

_CA_HELP = "rtsps/https: PEM file of the CA (or self-signed certificate) to trust for this camera."
_NO_VERIFY_HELP = "rtsps/https: accept any certificate (anyone on the path can impersonate the camera)."


def _tls(ca_file: str, no_verify: bool) -> TlsOptions:
    if ca_file and no_verify:
        raise typer.BadParameter("--tls-ca-file has no effect with --no-tls-verify; give one")
    return TlsOptions(verify=not no_verify, ca_file=ca_file or None)


def probe_command(
    url: str = typer.Argument(
        ..., envvar=PROBE_URL_ENV, show_envvar=True,
        help=f"Camera URL (rtsp://, http(s)://, file, /dev/videoN); or set ${PROBE_URL_ENV}, so that "
             "a password in it does not show in `ps`.",
    ),
    transport: str = typer.Option("tcp", help="RTSP transport: tcp or udp."),
    timeout: float = typer.Option(10.0, help="Seconds allowed to connect."),
    seconds: float = typer.Option(5.0, help="Seconds of stream to measure."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    tls_ca_file: str = typer.Option("", "--tls-ca-file", help=_CA_HELP),
    no_tls_verify: bool = typer.Option(False, "--no-tls-verify", help=_NO_VERIFY_HELP),
) -> None:
    """Describe a camera: codec, resolution, fps, keyframe interval."""
    if transport not in ("tcp", "udp"):
        raise typer.BadParameter("transport must be tcp or udp")
    opts = SourceOptions(transport=transport, open_timeout=timeout, stall_timeout=timeout,  # type: ignore[arg-type]
                         tls=_tls(tls_ca_file, no_tls_verify))
    try:
        result = probe(url, opts, seconds=seconds)
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    fps = f"{result.fps:.2f}" if result.fps else "?"
    measured = f" (measured {result.measured_fps:.2f})" if result.measured_fps else ""
    gop = (f"{result.keyframe_interval} frames ({result.keyframe_seconds:.2f} s)"
           if result.keyframe_interval and result.keyframe_seconds else "not seen")
    typer.echo(f"url        {result.url}")
    typer.echo(f"codec      {result.codec}" + (f" ({result.profile})" if result.profile else ""))
    typer.echo(f"resolution {result.width}x{result.height} {result.pixel_format or ''}")
    typer.echo(f"fps        {fps}{measured}")
    typer.echo(f"keyframes  every {gop}")
    if result.bitrate_kbps:
        typer.echo(f"bitrate    {result.bitrate_kbps:.0f} kbit/s")


def ingest_command(
    url: str = typer.Argument(
        ..., envvar=INGEST_URL_ENV, show_envvar=True,
        help=f"Camera URL, or synthetic://NAME?width=..&height=..&fps=..; or set ${INGEST_URL_ENV}, so "
             "that a password in it does not show in `ps`.",
    ),
    key: str = typer.Option(..., "--key", help="Ring key to publish under."),
    pixel_format: str = typer.Option("yuv420p", help="gray, yuv420p, nv12, bgr24 or rgb24."),
    width: int = typer.Option(0, help="Scale frames to this width (0: camera's)."),
    height: int = typer.Option(0, help="Scale frames to this height (0: camera's)."),
    fps: float = typer.Option(0.0, help="Publish at most this many frames/s (0: all)."),
    transport: str = typer.Option("tcp", help="RTSP transport: tcp or udp."),
    stall_timeout: float = typer.Option(10.0, help="Seconds without a frame before reconnecting."),
    open_timeout: float = typer.Option(10.0, help="Seconds allowed to connect."),
    backoff_max: float = typer.Option(30.0, help="Longest reconnect delay, seconds."),
    loop: bool = typer.Option(False, help="Files: start again at the end."),
    realtime: bool = typer.Option(False, help="Files: publish at the file's own rate."),
    hwaccel: str = typer.Option("", help="cuda, vaapi or qsv (falls back to software)."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    tls_ca_file: str = typer.Option("", "--tls-ca-file", help=_CA_HELP),
    no_tls_verify: bool = typer.Option(False, "--no-tls-verify", help=_NO_VERIFY_HELP),
    corrupt_degraded_per_min: float = typer.Option(
        30.0, help="Damaged frames per minute past which the stream is reported degraded (0: never)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run one camera: publish its packets and frames to the rings under KEY."""
    setup_logging(verbose)
    if transport not in ("tcp", "udp"):
        raise typer.BadParameter("transport must be tcp or udp")
    if hwaccel not in ("", "cuda", "vaapi", "qsv"):
        raise typer.BadParameter("hwaccel must be cuda, vaapi or qsv")
    tr: Literal["tcp", "udp"] = "udp" if transport == "udp" else "tcp"
    cfg = IngestConfig(
        url=url,
        key=key,
        source=SourceOptions(
            transport=tr,
            open_timeout=open_timeout,
            stall_timeout=stall_timeout,
            loop=loop,
            realtime=realtime,
            hwaccel=hwaccel or None,  # type: ignore[arg-type]
            tls=_tls(tls_ca_file, no_tls_verify),
            corrupt_degraded_per_min=corrupt_degraded_per_min,
        ),
        output=OutputSpec(
            pixel_format=PixelFormat.parse(pixel_format),
            width=width or None,
            height=height or None,
            fps=fps or None,
        ),
        backoff_max=backoff_max,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = IngestWorker(cfg)
    runner = threading.Thread(target=_run, args=(worker, stop), daemon=True)
    typer.echo(f"camfleet ingest: {mask_url(url)} -> rings '{key}' (Ctrl-C to stop)")
    runner.start()
    end = time.monotonic() + duration if duration > 0 else None
    try:
        while runner.is_alive() and (end is None or time.monotonic() < end):
            runner.join(timeout=2.0)
            st = worker.status()
            if st.state == IngestState.STREAMING:
                typer.echo(f"{st.state.value:<10} {st.width}x{st.height} {st.codec} "
                           f"{st.decode_fps:5.1f} fps  frames {st.frames}  packets {st.packets}  "
                           f"corrupt {st.corrupt_frames} ({st.corrupt_fps:.1f}/s)  "
                           f"reconnects/h {st.reconnects_last_hour}  stalls/h {st.stalls_last_hour}"
                           + (f"  DEGRADED: {st.degraded}" if st.degraded else ""))
            else:
                typer.echo(f"{st.state.value:<10} {st.seconds_in_state:5.1f} s  last error: {st.last_error}")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        runner.join(timeout=15)
    st = worker.status()
    typer.echo(f"decoded {st.decoded} frames: {st.corrupt_frames} corrupt (decoded from damaged data), "
               f"{st.rejected_packets} packets rejected by the decoder"
               + (f"; degraded: {st.degraded}" if st.degraded else ""))
    if worker.fatal is not None:
        typer.echo(f"error: {worker.fatal}", err=True)
        raise typer.Exit(2)


def _run(worker: IngestWorker, stop: threading.Event) -> None:
    # a fatal error is kept on worker.fatal and reported by the caller
    with contextlib.suppress(IngestError):
        worker.run(stop)
