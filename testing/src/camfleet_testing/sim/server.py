"""Simulated RTSP cameras: GStreamer's gst-rtsp-server fed with :class:`~camfleet.ingest.scene.Scene` frames.

:class:`SimServer` runs ``_gst_server.py`` (gst-rtsp-server through PyGObject)
as a child process under Debian's ``/usr/bin/python3`` and feeds it raw I420
frames through one pipe per camera. In this (parent) process one thread per
camera renders the scene at the camera's frame rate and writes the frames;
the child encodes (x264 / x265) and serves them over RTSP (RTP over TCP or
UDP) at ``rtsp://HOST:PORT/NAME``, or over TLS at ``rtsps://HOST:PORT/NAME``
with a throwaway self-signed certificate. Faults are injected from here: stop
and restart the server, stall a stream, switch its resolution, corrupt RTP
packets; credentials can be required (basic or digest).

``mode="replay"`` serves the same content for a fraction of the CPU: each
camera's stream is encoded once (PyAV's libx264, same settings) into a clip
cached on disk (:mod:`.clips`), and the server replays its access units at the
camera's frame rate, looping. No frame is rendered or encoded while it serves,
so a benchmark sharing the machine measures the system under test, not the
simulator. Resizing needs live mode; stall, corrupt, stop and start work.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal
from urllib.parse import quote

from camfleet.ingest.scene import OBJECTS, Scene

from . import _gst_server as proto
from .clips import ensure_clips

__all__ = ["APT_HINT", "SERVER_PYTHON", "CameraSpec", "SimError", "SimServer"]

log = logging.getLogger("camfleet_testing.sim")

SERVER_PYTHON = "/usr/bin/python3"
"""The interpreter that runs the RTSP server: Debian's, which has ``python3-gi``."""
APT_HINT = proto.APT_HINT
"""The command that installs everything the simulator's server needs (Debian 12)."""

_HELPER = Path(proto.__file__).resolve()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TERM_TIMEOUT = 3.0  # seconds a stopping server gets after SIGTERM before SIGKILL
_ACK_TIMEOUT = 5.0  # seconds to wait for the server to acknowledge a command
_BIND_RETRY = 5.0  # seconds a restart keeps trying to bind the same port again
_PIPE_SIZE = 1 << 20  # bytes; the largest pipe buffer Linux gives an unprivileged process by default
_CERT_TIMEOUT = 30.0  # seconds openssl gets to make the TLS certificate
OPENSSL_APT_HINT = "apt-get install -y --no-install-recommends openssl"


class SimError(RuntimeError):
    """The simulator's RTSP server is missing, failed to start, died, or did not answer."""


@dataclass(frozen=True)
class CameraSpec:
    """One simulated camera.

    ``name`` is the RTSP path (``rtsp://host:port/NAME``); ``codec`` is
    ``"h264"`` or ``"h265"``; ``width`` and ``height`` are pixels (even);
    ``fps`` is frames per second; ``bitrate_kbps`` is the encoder's target in
    kbit/s; ``gop`` is the keyframe interval in frames; ``seed`` and
    ``objects`` select the :class:`~camfleet.ingest.scene.Scene`.
    ``active`` is the fraction of the time the objects are in the picture: below 1 the
    camera shows them for ``active * active_period_s`` seconds of every ``active_period_s``
    and an empty, still scene otherwise (each camera at its own phase, from ``seed``),
    like a real camera that sees something now and then.
    """

    name: str = "cam0"
    codec: Literal["h264", "h265"] = "h264"
    width: int = 640
    height: int = 360
    fps: float = 15.0
    bitrate_kbps: int = 1000
    gop: int = 30
    seed: int = 0
    objects: tuple[str, ...] = ("person", "cat", "motorcycle")
    active: float = 1.0
    active_period_s: float = 40.0

    def is_active(self, frame_index: int) -> bool:
        """Whether frame ``frame_index`` shows the objects (see ``active``)."""
        if self.active >= 1.0:
            return True
        phase = (frame_index / self.fps + self.seed * 7.3) % self.active_period_s
        return phase < self.active * self.active_period_s

    def __post_init__(self) -> None:
        where = f"camera {self.name!r}"
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{where}: name must be 1-64 of [A-Za-z0-9_.-], starting alphanumeric")
        if self.codec not in ("h264", "h265"):
            raise ValueError(f"{where}: codec must be 'h264' or 'h265', got {self.codec!r}")
        _check_size(self.width, self.height, where)
        if not 0.5 <= self.fps <= 120:
            raise ValueError(f"{where}: fps must be within 0.5..120, got {self.fps}")
        if not 16 <= self.bitrate_kbps <= 200_000:
            raise ValueError(f"{where}: bitrate_kbps must be within 16..200000, got {self.bitrate_kbps}")
        if not 1 <= self.gop <= 10_000:
            raise ValueError(f"{where}: gop must be within 1..10000 frames, got {self.gop}")
        unknown = [o for o in self.objects if o not in OBJECTS]
        if unknown or not self.objects:
            raise ValueError(f"{where}: objects must be a non-empty subset of {sorted(OBJECTS)}; "
                             f"unknown: {unknown}")
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 0.0 <= self.active <= 1.0 or not 1.0 <= self.active_period_s <= 86400:
            raise ValueError(f"{where}: active must be within 0..1 and active_period_s within 1..86400 s")


def _check_size(width: int, height: int, where: str) -> None:
    if width % 2 or height % 2 or not 16 <= width <= 7680 or not 16 <= height <= 4320:
        raise ValueError(f"{where}: size must be even and within 16x16..7680x4320, got {width}x{height}")


@dataclass(eq=False)
class _Feed:
    """Parent-side state of one camera: what its feeder thread renders and where it writes."""

    spec: CameraSpec
    scene: Scene
    stalled: bool = False
    corrupt: float = 0.0
    frames_sent: int = 0
    frames_skipped: int = 0  # frames the feeder skipped because rendering/writing fell behind the clock
    fd: int | None = None  # write end of the frame pipe while a server runs
    broken: bool = False  # the server stopped reading (it died): wait for the next start
    io_lock: threading.Lock = field(default_factory=threading.Lock)  # owns fd: held for a whole frame
    thread: threading.Thread | None = None
    clip: Path | None = None  # replay mode: the encoded clip the server replays
    server_counts: dict[str, Any] = field(default_factory=dict)  # replay: the server's last counters


class _Process:
    """One run of the server process: the child, its output drain and its command channel."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.ready = threading.Event()  # set on READY, ERROR or end of output
        self.port: int | None = None
        self.error: str | None = None
        self.acks: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self.write_lock = threading.Lock()
        self.next_id = 0
        self.drain = threading.Thread(target=self._drain, name="camfleet-sim-output", daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        """Read every line the server prints (so it never blocks on a full pipe) and dispatch it."""
        out = self.popen.stdout
        assert out is not None
        for raw in out:
            line = raw.rstrip("\n")
            if line.startswith("ACK "):
                try:
                    _, ident, payload = line.split(" ", 2)
                    waiter = self.acks.pop(int(ident), None)
                    counters = json.loads(payload)
                except ValueError:  # not ours after all: keep it as a log line, keep draining
                    waiter = None
                else:
                    if waiter is not None:
                        waiter[1].append(counters)
                        waiter[0].set()
                    continue
            self.tail.append(line)
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                self.ready.set()
            elif line.startswith("ERROR "):
                self.error = line[6:]
                self.ready.set()
            log.debug("sim server: %s", line)
        self.ready.set()
        for event, _ in list(self.acks.values()):
            event.set()

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return the server's counters from its acknowledgement."""
        event = threading.Event()
        result: list[dict[str, Any]] = []
        with self.write_lock:
            self.next_id += 1
            ident = self.next_id
            self.acks[ident] = (event, result)
            stdin = self.popen.stdin
            assert stdin is not None
            try:
                stdin.write(json.dumps({"id": ident, **message}) + "\n")
                stdin.flush()
            except OSError as exc:
                self.acks.pop(ident, None)
                raise SimError(f"the simulator server is not running ({exc})") from exc
        if not event.wait(_ACK_TIMEOUT) or not result:
            self.acks.pop(ident, None)
            raise SimError(f"the simulator server did not acknowledge {message['cmd']!r}{self.describe()}")
        return result[0]

    def describe(self) -> str:
        """The exit status and the last lines of output, for error messages."""
        code = self.popen.poll()
        status = "" if code is None else f" (exit status {code})"
        tail = "\n  ".join(self.tail)
        return f"{status}; its last output:\n  {tail}" if tail else status

    def stop(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL after a timeout; reap it and its output thread."""
        p = self.popen
        with contextlib.suppress(OSError):
            if p.stdin is not None:
                p.stdin.close()
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(_TERM_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("sim server pid %d ignored SIGTERM for %.0f s: killing it", p.pid, _TERM_TIMEOUT)
                p.kill()
                p.wait(_TERM_TIMEOUT)
        self.drain.join(_TERM_TIMEOUT)
        if p.stdout is not None:
            p.stdout.close()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to a blocking pipe (``os.write`` may write less than asked)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


class SimServer:
    """N simulated cameras served over RTSP by gst-rtsp-server, with fault injection.

    ``cameras``: the :class:`CameraSpec` of each camera (unique names).
    ``host``/``port``: where RTSP listens; ``port=0`` picks a free port once,
    which is then kept across :meth:`stop`/:meth:`start`. RTP over UDP uses
    random ports on all addresses (gst-rtsp-server's default).
    ``user``/``password``: require these credentials (both or neither), with
    ``auth`` ``"basic"`` or ``"digest"``. ``tls``: serve RTSP over TLS
    (``rtsps://``, RTP interleaved in the TLS connection: TCP transport only)
    with a self-signed certificate made at :meth:`open` for ``localhost``,
    ``127.0.0.1``, ``::1`` and ``host``, kept across :meth:`stop`/:meth:`start`
    and deleted by :meth:`close` (:attr:`tls_certificate` is its path, for
    clients that verify). ``tls_files``: (certificate, key) PEM files to serve
    instead, e.g. a certificate signed by a test CA (copied at :meth:`open`;
    implies ``tls``). ``server_python`` is the interpreter
    with PyGObject that runs the server; ``start_timeout`` (seconds) bounds
    how long :meth:`start` waits for it to accept connections.

    ``mode``: ``"live"`` (default) renders every frame here and encodes it in
    the server as it is sent; ``"replay"`` encodes each camera's clip once at
    :meth:`open` (H.264 only; cached in ``clip_dir``, default
    :func:`~camfleet_testing.sim.clips.default_cache_dir`) and the server
    replays it: same pictures, same activity schedule, a fraction of the CPU.
    In replay mode :meth:`resize` raises :class:`SimError`.

    Use it as a context manager: entering renders the scenes, starts one
    feeder thread per camera (live mode) and the server, and returns once the
    server accepts RTSP connections; leaving stops everything (also on
    exceptions). Every method is safe to call from any thread.
    """

    def __init__(
        self,
        cameras: Sequence[CameraSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        auth: Literal["basic", "digest"] = "basic",
        *,
        tls: bool = False,
        tls_files: tuple[Path, Path] | None = None,
        server_python: str = SERVER_PYTHON,
        start_timeout: float = 15.0,
        mode: Literal["live", "replay"] = "live",
        clip_dir: Path | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("SimServer needs at least one camera")
        if mode not in ("live", "replay"):
            raise ValueError(f"mode must be 'live' or 'replay', got {mode!r}")
        if mode == "replay":
            h265 = [c.name for c in cameras if c.codec != "h264"]
            if h265:
                raise ValueError(f"replay mode serves h264 only; not: {h265} (use mode='live')")
        names = [c.name for c in cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique; repeated: {dupes}")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        if auth not in ("basic", "digest"):
            raise ValueError(f"auth must be 'basic' or 'digest', got {auth!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {port}")
        self.host = host
        self.user = user
        self._password = password
        self.auth = auth
        self.tls = tls or tls_files is not None
        self._tls_files = tls_files
        self._tls_dir: Path | None = None  # private directory of the certificate and key while open
        self.server_python = server_python
        self.start_timeout = start_timeout
        self.mode = mode
        self._clip_dir = clip_dir
        self._port = port
        self._specs = list(cameras)
        self._feeds: dict[str, _Feed] = {}
        self._scenes: dict[tuple[int, int, int, tuple[str, ...]], Scene] = {}
        self._scene_lock = threading.Lock()
        self._lock = threading.RLock()  # serialises start/stop/close
        self._proc: _Process | None = None
        self._closing = threading.Event()
        self._opened = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> SimServer:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Render the scenes, start the feeder threads and the server; return once it accepts connections."""
        with self._lock:
            if self._opened:
                return
            self._opened = True
            try:
                clips = ensure_clips(self._specs, self._clip_dir) if self.mode == "replay" else {}
                for spec in self._specs:
                    scene = self._scene(spec.width, spec.height, spec.seed, spec.objects)
                    self._feeds[spec.name] = _Feed(spec=spec, scene=scene, clip=clips.get(spec.name))
                if self._tls_files is not None:
                    self._tls_dir = _copy_certificate(*self._tls_files)
                elif self.tls:
                    self._tls_dir = _make_certificate(self.host)
                self.start()
                for feed in self._feeds.values():
                    if feed.clip is not None:
                        continue  # replay: the server paces the clip itself
                    feed.thread = threading.Thread(target=self._feed_loop, args=(feed,),
                                                   name=f"camfleet-sim-{feed.spec.name}", daemon=True)
                    feed.thread.start()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Stop the server and the feeder threads. Idempotent."""
        with self._lock:
            self._closing.set()
            self.stop()
            for feed in self._feeds.values():
                if feed.thread is not None:
                    feed.thread.join(5.0)
                    if feed.thread.is_alive():
                        log.warning("sim feeder %s did not stop within 5 s", feed.spec.name)
            if self._tls_dir is not None:
                shutil.rmtree(self._tls_dir, ignore_errors=True)
                self._tls_dir = None

    def start(self) -> None:
        """Start the RTSP server process (again, on the same port); return once it accepts connections.

        Raises :class:`SimError` naming what to install when the server's
        Python, PyGObject or a GStreamer element is missing, or with the
        server's last output when it dies or does not come up within
        ``start_timeout`` seconds. Does nothing if the server runs.
        """
        with self._lock:
            if self._closing.is_set():
                raise SimError("this SimServer is closed")
            if self._proc is not None and self._proc.popen.poll() is None:
                return
            self.stop()  # reap a server that died by itself
            if not Path(self.server_python).exists():
                raise SimError(
                    f"{self.server_python} not found: the camera simulator runs GStreamer's RTSP server "
                    f"under Debian's python3; install with: {APT_HINT}"
                )
            deadline = time.monotonic() + self.start_timeout
            bind_deadline = time.monotonic() + _BIND_RETRY
            while True:
                proc = self._spawn()
                if not proc.ready.wait(max(0.0, deadline - time.monotonic())):
                    proc.stop()
                    self._release_pipes()
                    raise SimError(
                        f"the simulator server did not start within {self.start_timeout:g} s{proc.describe()}"
                    )
                if proc.port is not None:
                    break
                proc.stop()
                self._release_pipes()
                # A restart can race the old socket's release: retry binding the same port for a while.
                rebind = proc.popen.returncode == proto.EXIT_BIND and self._port != 0
                if rebind and time.monotonic() < bind_deadline:
                    time.sleep(0.1)
                    continue
                raise SimError(f"the simulator server failed to start: {proc.error or 'it exited'}"
                               f"{proc.describe()}")
            self._proc = proc
            self._port = proc.port
            self._wait_accepting(proc, deadline)
            log.info("sim server pid %d listening on %s:%d", proc.popen.pid, self.host, self._port)

    def stop(self) -> None:
        """Stop the RTSP server process (clients are disconnected); the feeders keep their clocks running."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                proc.stop()  # first: a feeder blocked writing to a pipe gets EPIPE and lets go of io_lock
            self._release_pipes()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        proc = self._proc
        return proc is not None and proc.popen.poll() is None

    def _spawn(self) -> _Process:
        """Start one server process with a fresh frame pipe per camera."""
        read_fds: list[int] = []
        config: dict[str, Any] = {
            "host": self.host,
            "port": self._port,
            "user": self.user,
            "password": self._password,
            "auth": self.auth,
            "tls": None,
            "cameras": [],
        }
        if self._tls_dir is not None:
            config["tls"] = {"cert": str(self._tls_dir / "cert.pem"), "key": str(self._tls_dir / "key.pem")}
        try:
            for feed in self._feeds.values():
                spec, scene = feed.spec, feed.scene
                camera: dict[str, Any] = {
                    "name": spec.name, "codec": spec.codec, "width": scene.width, "height": scene.height,
                    "fps": spec.fps, "bitrate_kbps": spec.bitrate_kbps, "gop": spec.gop, "fd": None,
                    "corrupt": feed.corrupt, "clip": None, "stalled": feed.stalled,
                }
                if feed.clip is not None:
                    camera["clip"] = str(feed.clip)
                else:
                    r, w = os.pipe()
                    read_fds.append(r)
                    with contextlib.suppress(OSError):  # a bigger pipe means fewer wake-ups per frame
                        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
                    with feed.io_lock:
                        feed.fd, feed.broken = w, False
                    camera["fd"] = r
                config["cameras"].append(camera)
            popen = subprocess.Popen(
                # -I: isolated from the venv's PYTHON* variables and user site-packages.
                [self.server_python, "-I", "-u", str(_HELPER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # GStreamer warnings go to stderr: drained with the rest
                text=True,
                errors="replace",
                pass_fds=read_fds,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the server in order
                close_fds=True,
            )
        except BaseException:
            self._release_pipes()
            raise
        finally:
            for r in read_fds:
                os.close(r)
        proc = _Process(popen)
        stdin: IO[str] | None = popen.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(config) + "\n")
            stdin.flush()
        except OSError:
            pass  # it died at once: its output says why
        return proc

    def _release_pipes(self) -> None:
        for feed in self._feeds.values():
            with feed.io_lock:
                if feed.fd is not None:
                    os.close(feed.fd)
                    feed.fd = None

    def _wait_accepting(self, proc: _Process, deadline: float) -> None:
        """Poll-connect the RTSP port until it accepts, the server dies, or the deadline passes."""
        assert self._port
        while True:
            try:
                with socket.create_connection((_connect_host(self.host), self._port), timeout=0.5):
                    return
            except OSError as exc:
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SimError(f"the simulator server does not accept connections on "
                                   f"{self.host}:{self._port} ({exc}){proc.describe()}") from exc
                time.sleep(0.05)

    # -- frames ------------------------------------------------------------------------------------
    def _scene(self, width: int, height: int, seed: int, objects: tuple[str, ...]) -> Scene:
        """A shared, immutable scene per (size, seed, objects): cameras alike render the same one."""
        key = (width, height, seed, objects)
        with self._scene_lock:
            scene = self._scenes.get(key)
            if scene is None:
                scene = self._scenes[key] = Scene(width, height, seed=seed, objects=objects)
            return scene

    def _feed_loop(self, feed: _Feed) -> None:
        """Render and send frames at the camera's rate until closed; skip frames rather than drift."""
        period = 1.0 / feed.spec.fps
        epoch = time.monotonic()
        index = 0
        while True:
            due = epoch + index * period
            if self._closing.wait(max(0.0, due - time.monotonic())):
                return
            behind = int((time.monotonic() - due) / period)
            if behind > 0:  # late by whole frames: jump to the frame that is due now
                index += behind
                feed.frames_skipped += behind
            try:
                self._send(feed, index)
            except Exception:  # never let one bad frame kill the camera: log and go on
                log.exception("sim feeder %s: frame %d failed", feed.spec.name, index)
            index += 1

    def _send(self, feed: _Feed, index: int) -> None:
        if feed.stalled or feed.fd is None or feed.broken:
            return
        scene = feed.scene
        frame = scene.render_i420(index) if feed.spec.is_active(index) else scene.background_i420()
        header = proto.HEADER.pack(proto.MAGIC, scene.width, scene.height, index & 0xFFFFFFFF)
        with feed.io_lock:
            if feed.fd is None or feed.broken:
                return
            try:
                _write_all(feed.fd, header)
                _write_all(feed.fd, frame.data)  # render_i420 returns a new, contiguous array
            except OSError as exc:  # EPIPE: the server is gone; stop() or start() will replace the pipe
                feed.broken = True
                log.debug("sim feeder %s: %s", feed.spec.name, exc)
                return
            feed.frames_sent += 1

    # -- faults and inspection ---------------------------------------------------------------------
    def _feed(self, camera: str) -> _Feed:
        try:
            return self._feeds[camera]
        except KeyError:
            raise KeyError(f"no camera {camera!r}; cameras: {sorted(self._feeds)}") from None

    @property
    def port(self) -> int:
        """The RTSP port (the one picked when created with ``port=0``)."""
        return self._port

    @property
    def tls_certificate(self) -> Path | None:
        """The server's self-signed certificate (PEM) while open with ``tls=True``, else None.

        It is its own certificate authority: a client that verifies can trust
        just this file (FFmpeg: ``tls_verify=1`` and ``ca_file=PATH``).
        """
        return None if self._tls_dir is None else self._tls_dir / "cert.pem"

    @property
    def cameras(self) -> list[str]:
        """The camera names."""
        return [s.name for s in self._specs]

    def url(self, camera: str, *, user: str | None = None, password: str | None = None) -> str:
        """The RTSP URL of ``camera``, with ``user:password@`` when credentials are configured or given.

        The scheme is ``rtsps`` when the server speaks TLS, else ``rtsp``.

        ``user``/``password`` override the configured ones (e.g. a wrong
        password in a test). The URL carries the password: never log it.
        """
        self._feed(camera)
        u = user if user is not None else self.user
        p = password if password is not None else self._password
        userinfo = ""
        if u is not None:
            userinfo = quote(u, safe="") + (f":{quote(p, safe='')}" if p is not None else "") + "@"
        scheme = "rtsps" if self.tls else "rtsp"
        return f"{scheme}://{userinfo}{_url_host(self.host)}:{self._port}/{camera}"

    def stall(self, camera: str) -> None:
        """Stop sending frames of ``camera``; its RTSP sessions stay up, they just get no more video."""
        self._set_stalled(camera, True)

    def resume(self, camera: str) -> None:
        """Send frames of ``camera`` again after :meth:`stall` (replay: from the current GOP's keyframe)."""
        self._set_stalled(camera, False)

    def _set_stalled(self, camera: str, stalled: bool) -> None:
        feed = self._feed(camera)
        feed.stalled = stalled  # also what a restarted server is configured with
        proc = self._proc
        if feed.clip is not None and proc is not None and self.running:
            feed.server_counts = proc.command({"cmd": "stall", "camera": camera, "stalled": stalled})

    def resize(self, camera: str, width: int, height: int) -> None:
        """Switch ``camera`` to ``width`` x ``height`` pixels mid-stream, from the next frame on.

        The scene is re-rendered at the new size (its motion is the same,
        scaled); the encoder restarts with a keyframe at the new size, and
        clients keep their session.
        """
        feed = self._feed(camera)
        _check_size(width, height, f"camera {camera!r}")
        if feed.clip is not None:
            raise SimError(f"camera {camera!r}: resize needs a live simulator (SimServer(mode='live')); "
                           "this one replays a clip encoded at one size")
        feed.scene = self._scene(width, height, feed.spec.seed, feed.spec.objects)

    def corrupt(self, camera: str, fraction: float) -> None:
        """Corrupt ``fraction`` (0..1) of ``camera``'s RTP packets (payload bytes flipped); 0 turns it off.

        Applies from when this returns, and again after a restart.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"corrupt fraction must be within 0..1, got {fraction}")
        feed = self._feed(camera)
        feed.corrupt = fraction
        proc = self._proc
        if proc is not None and self.running:
            proc.command({"cmd": "corrupt", "camera": camera, "fraction": fraction})

    def frames_sent(self, camera: str) -> int:
        """Frames this process has handed to the server for ``camera`` (not counting stalls or stops).

        Replay mode: access units the server pushed to its clients (its counter ``pushed``; the last
        value known while it is not running).
        """
        feed = self._feed(camera)
        if feed.clip is None:
            return feed.frames_sent
        return int(self._replay_counts(feed).get("pushed", 0))

    def frames_skipped(self, camera: str) -> int:
        """Frames the feeder of ``camera`` skipped because it could not keep up with its frame rate.

        Replay mode: access units the server skipped because it fell more than 2 s behind its clock.
        """
        feed = self._feed(camera)
        if feed.clip is None:
            return feed.frames_skipped
        return int(self._replay_counts(feed).get("skipped", 0))

    def _replay_counts(self, feed: _Feed) -> dict[str, Any]:
        proc = self._proc
        if proc is not None and self.running:
            with contextlib.suppress(SimError):  # it died meanwhile: the last counters known
                feed.server_counts = proc.command({"cmd": "stats", "camera": feed.spec.name})
        return feed.server_counts

    def server_stats(self, camera: str) -> dict[str, Any]:
        """The server's counters for ``camera``.

        Keys: ``received`` and ``pushed`` (frames; pushed only while a client
        is connected), ``corrupted`` (RTP packets), ``medias`` (pipelines
        built), ``width``/``height`` (last frame), ``corrupt_fraction``,
        ``mode`` (``"live"`` or ``"replay"``), ``stalled``, and in replay mode
        ``skipped`` (access units skipped), ``loops`` (times the clip wrapped)
        and ``clip_frames``.
        Raises :class:`SimError` when the server is not running.
        """
        self._feed(camera)
        proc = self._proc
        if proc is None or not self.running:
            raise SimError("the simulator server is not running")
        return proc.command({"cmd": "stats", "camera": camera})


def _url_host(host: str) -> str:
    """The host part of a client URL for a bind address (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _connect_host(host: str) -> str:
    return _url_host(host).strip("[]")


def _copy_certificate(cert: Path, key: Path) -> Path:
    """A new private directory holding copies of ``cert`` and ``key`` as ``cert.pem``, ``key.pem`` (0600)."""
    directory = Path(tempfile.mkdtemp(prefix="camfleet-sim-tls-"))  # mode 0700
    try:
        for src, name in ((cert, "cert.pem"), (key, "key.pem")):
            dst = directory / name
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Path(src).read_bytes())
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def _make_certificate(host: str) -> Path:
    """A new private directory holding ``cert.pem`` and ``key.pem``: a self-signed certificate for ``host``.

    The certificate (EC P-256, valid for 2 days) names ``localhost``,
    ``127.0.0.1`` and ``::1`` and the bind address or name ``host`` as
    subject alternative names, and may sign itself (CA), so that a verifying
    client can trust it alone. Made with the ``openssl`` command; the
    directory is 0700 and both files 0600. The caller deletes the directory.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SimError(f"the openssl command is needed for a TLS (rtsps://) simulator; "
                       f"install with: {OPENSSL_APT_HINT}")
    names = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"}
    bare = host.strip("[]")
    if bare and bare not in ("0.0.0.0", "::"):
        try:
            names.add(f"IP:{ipaddress.ip_address(bare)}")
        except ValueError:
            names.add(f"DNS:{bare}")
    directory = Path(tempfile.mkdtemp(prefix="camfleet-sim-tls-"))  # mode 0700
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        try:
            proc = subprocess.run(
                [openssl, "req", "-x509", "-nodes",
                 "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=camfleet-sim",
                 "-addext", "subjectAltName=" + ",".join(sorted(names)),
                 "-addext", "basicConstraints=critical,CA:TRUE"],
                capture_output=True, text=True, errors="replace", timeout=_CERT_TIMEOUT, check=False,
                umask=0o077,
            )
        except subprocess.TimeoutExpired:
            raise SimError(f"openssl did not make the TLS certificate within {_CERT_TIMEOUT:g} s") from None
        if proc.returncode != 0 or not cert.is_file() or not key.is_file():
            raise SimError(f"openssl could not make the TLS certificate (exit status {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
        for path in (cert, key):
            path.chmod(0o600)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory
