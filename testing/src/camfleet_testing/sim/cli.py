"""What ``camfleet sim`` runs: serve simulated cameras, print their frame rates, apply fault commands.

The command itself (its options) lives in :mod:`camfleet.cli.sim`, which imports this module only
when it runs, so the product works without the development package.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Literal, cast

import typer

from camfleet.cli.sim import HELP_COMMANDS as _HELP_COMMANDS

from .server import CameraSpec, SimError, SimServer


def _masked_url(server: SimServer, camera: str) -> str:
    """The camera's URL with the password shown as ``***`` (credentials never reach the terminal)."""
    if server.user is None:
        return server.url(camera)
    return server.url(camera, password="x").replace(":x@", ":***@", 1)


def _specs(
    cameras: int, codec: str, width: int, height: int, fps: float, bitrate: int, gop: int, objects: str
) -> list[CameraSpec]:
    codecs = [c.strip().lower() for c in codec.split(",") if c.strip()]
    bad = [c for c in codecs if c not in ("h264", "h265")]
    if not codecs or bad:
        raise typer.BadParameter(f"codecs must be h264 or h265, got {codec!r}", param_hint="--codec")
    names = tuple(o.strip() for o in objects.split(",") if o.strip())
    try:
        return [
            CameraSpec(
                name=f"cam{i}",
                codec=cast(Literal["h264", "h265"], codecs[i % len(codecs)]),
                width=width,
                height=height,
                fps=fps,
                bitrate_kbps=bitrate,
                gop=gop,
                seed=i,
                objects=names,
            )
            for i in range(cameras)
        ]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _command(server: SimServer, line: str) -> bool:
    """Apply one interactive fault command; False when it asks to quit. Errors are printed, not raised."""
    parts = line.split()
    if not parts:
        return True
    cmd, args = parts[0].lower(), parts[1:]
    try:
        if cmd in ("quit", "exit"):
            return False
        if cmd in ("stall", "resume") and len(args) == 1:
            (server.stall if cmd == "stall" else server.resume)(args[0])
        elif cmd == "resize" and len(args) == 2:
            w, _, h = args[1].lower().partition("x")
            server.resize(args[0], int(w), int(h))
        elif cmd == "corrupt" and len(args) == 2:
            server.corrupt(args[0], float(args[1]))
        elif cmd == "stop" and not args:
            server.stop()
        elif cmd == "start" and not args:
            server.start()
        elif cmd == "restart" and not args:
            server.stop()
            server.start()
        else:
            typer.echo(f"? {line.strip()}  ({_HELP_COMMANDS})")
            return True
    except (KeyError, ValueError, SimError) as exc:
        typer.echo(f"error: {line.strip()}: {exc}")
        return True
    typer.echo(f"ok: {line.strip()}")
    return True


def _read_stdin(lines: queue.Queue[str | None]) -> None:
    """Forward stdin lines to the main loop (a thread, so the loop can keep printing meanwhile)."""
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)


def serve(
    *, cameras: int, codec: str, width: int, height: int, fps: float, bitrate: int, gop: int, port: int,
    host: str, user: str | None, password: str | None, auth: str, tls: bool, objects: str, duration: float,
    interactive: bool,
) -> None:
    """Serve simulated RTSP cameras until Ctrl-C, SIGTERM, ``duration`` or ``quit``; see ``camfleet sim``.

    Raises:
        typer.BadParameter: an option is invalid.
        typer.Exit: the server failed (the reason is printed).
    """
    if auth not in ("basic", "digest"):
        raise typer.BadParameter(f"must be basic or digest, got {auth!r}", param_hint="--auth")
    if (user is None) != (password is None):
        raise typer.BadParameter("give both --user and --password, or neither", param_hint="--user")
    specs = _specs(cameras, codec, width, height, fps, bitrate, gop, objects)
    stop = threading.Event()
    previous: Callable[[int, FrameType | None], object] | int | None = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with SimServer(specs, host=host, port=port, user=user, password=password,
                       auth=cast(Literal["basic", "digest"], auth), tls=tls) as server:
            _serve(server, specs, stop, duration, interactive)
    except SimError as exc:
        typer.echo(f"camfleet sim: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    typer.echo("camfleet sim: stopped.")


def _serve(server: SimServer, specs: list[CameraSpec], stop: threading.Event, duration: float,
           interactive: bool) -> None:
    """Print the URLs, then a line of frame rates per second, applying commands until told to stop."""
    s0 = specs[0]
    typer.echo(f"camfleet sim: {len(specs)} camera(s), {s0.width}x{s0.height} @ {s0.fps:g} fps, "
               f"{s0.bitrate_kbps} kbit/s, GOP {s0.gop}, on port {server.port}")
    for spec in specs:
        typer.echo(f"  {spec.name:<6} {spec.codec}  {_masked_url(server, spec.name)}")
    if server.tls_certificate is not None:
        typer.echo(f"  TLS certificate (self-signed, deleted on exit): {server.tls_certificate}")
    typer.echo(f"  {_HELP_COMMANDS}" if interactive else "  Ctrl-C to stop.")
    lines: queue.Queue[str | None] = queue.Queue()
    if interactive:
        threading.Thread(target=_read_stdin, args=(lines,), name="camfleet-sim-stdin", daemon=True).start()
    start = time.monotonic()
    end = start + duration if duration > 0 else None
    last = {s.name: 0 for s in specs}
    tick = start + 1.0
    while not stop.is_set():
        now = time.monotonic()
        if end is not None and now >= end:
            break
        if now >= tick:
            parts = []
            for s in specs:
                sent = server.frames_sent(s.name)
                parts.append(f"{s.name} {sent - last[s.name]:>3} fps ({sent})")
                last[s.name] = sent
            state = "" if server.running else "  [server stopped]"
            typer.echo(f"  {now - start:6.0f}s  " + "  ".join(parts) + state)
            tick += 1.0 * max(1, int(now - tick) + 1)
        wait = min(tick, end if end is not None else tick) - time.monotonic()
        try:
            line = lines.get(timeout=max(0.0, wait)) if interactive else None
        except queue.Empty:
            continue
        if line is None:
            if interactive:
                interactive = False  # stdin closed: keep serving until Ctrl-C or the duration
            else:
                stop.wait(max(0.0, wait))
            continue
        if not _command(server, line):
            break
