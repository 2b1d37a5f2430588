"""Per-camera log files with one writer: children send their records, the supervisor writes them.

Every process of a node logs; several of them (ingest, pipeline, recorder) are
about the same camera. Rotating one file from several processes loses and
breaks lines, so only the supervisor writes files:

* a child calls :func:`child_logging` first thing: its root logger sends every
  record, formatted and masked in the child, to the supervisor's
  :class:`LogRouter`, tagged with the child's camera and role;
* the router writes each record to the main log ``<logs_path>/camfleet.log``
  (and the console) and, when the record names a camera, to
  ``<logs_path>/<camera>.log``. Files rotate at ``logging.max_bytes`` keeping
  ``logging.backups`` old files; they are created 0600 in a 0700 directory.

Transport: each child has its own Unix stream connection to the router (in a
0700 directory, peer uid checked) and sends one JSON object per line. Nothing
is shared between children, so a child killed in the middle of a record loses
only that record (a ``multiprocessing.Queue`` would be left with its
cross-process lock held, or its pipe's framing broken, stopping every
process's logging). Nothing is unpickled.

A line reads::

    2026-11-21 15:10:00.123 INFO [cam1/ingest pid=123] camfleet.ingest: connected

``[node]`` (or ``[cam1/node]`` given ``extra={"camera": "cam1"}``) marks the
supervisor's own records. Credentials in messages and tracebacks are masked
before any handler sees them.

:func:`tail_log` and :func:`follow_log` (:mod:`camfleet.runtime.logread`)
read a log back; following survives rotation (the file renamed and a new one
created).

The module is longer than most because the child's handler and the router
are the two ends of one wire format and one set of guarantees (masking,
record size, back-pressure, peer checks); split, each half would be
unreadable without the other.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import logging.handlers
import os
import re
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from camfleet.config.model import CAMERA_NAME_PATTERN, Config, LogSettings
from camfleet.redact import mask_text, quiet_http_clients

from .logread import follow_log, tail_log

__all__ = [
    "CONSOLE_FORMAT",
    "DATE_FORMAT",
    "FILE_FORMAT",
    "MAIN_LOG",
    "LogRouter",
    "child_logging",
    "follow_log",
    "tail_log",
]

MAIN_LOG = "camfleet.log"
"""File name of the main log (every record of the node) in ``Config.logs_path``."""
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
"""``asctime`` format of file lines; milliseconds follow after a dot."""
FILE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(tag)s] %(name)s: %(message)s"
"""Format of a log-file line (``tag`` is ``camera/role pid=N`` or ``node``)."""
CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s [%(tag)s] %(name)s: %(message)s"
"""Format of a console line: the CLI's format with the process tag added."""

MAX_RECORD_BYTES = 1 << 20
"""A record longer than this (bytes of JSON) is cut short in the child."""
SEND_TIMEOUT_S = 5.0
"""A child waits at most this long (seconds) for the router to take a record, then drops it."""
RECONNECT_S = 1.0
"""A child that lost the router tries again at most this often (seconds); records meanwhile are dropped."""

_CAMERA_RE = re.compile(CAMERA_NAME_PATTERN)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_PLAIN = (str, int, float, bool, type(None))


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use {', '.join(_LEVELS)}") from None


def _quiet_libav(level: int) -> None:
    # FFmpeg's own log lines quote URLs with passwords: keep them out, except when debugging
    logging.getLogger("libav").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)
    quiet_http_clients()


def _safe_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # a bad format string or a broken __str__ must not lose the record
        try:
            args = repr(record.args)
        except Exception:
            args = "<unprintable arguments>"
        return f"{record.msg!s} % {args} (log formatting failed: {type(exc).__name__}: {exc})"


def _flatten(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with only plain values: message and traceback as masked text."""
    out = copy.copy(record)
    out.msg = mask_text(_safe_message(record)).rstrip("\n")
    out.args = None
    if record.exc_info:
        if not out.exc_text:
            try:
                out.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            except Exception:
                out.exc_text = "<traceback could not be formatted>"
        out.exc_info = None
    if out.exc_text:
        out.exc_text = mask_text(out.exc_text)
    if out.stack_info:
        out.stack_info = mask_text(out.stack_info)
    for key, value in list(out.__dict__.items()):
        if not isinstance(value, _PLAIN):
            try:
                out.__dict__[key] = mask_text(repr(value))
            except Exception:
                out.__dict__[key] = "<unprintable>"
    return out


class _TagFilter(logging.Filter):
    """Adds ``tag``: ``camera/role pid=N`` for a child's record, ``node`` or ``camera/node`` otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        camera = getattr(record, "camera", None)
        role = getattr(record, "role", None)
        if role is None:
            record.tag = f"{camera}/node" if camera else "node"
        else:
            where = f"{camera}/{role}" if camera else str(role)
            record.tag = f"{where} pid={record.process}"
        return True


# --------------------------------------------------------------------------- the child side


class _ChildHandler(logging.Handler):
    """Sends a child's records to the router: one JSON line each, over its own connection."""

    def __init__(self, address: str, camera: str | None, role: str) -> None:
        super().__init__()
        self.address = address
        self.camera = camera
        self.role = role
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self.dropped = 0

    def _connect(self) -> socket.socket | None:
        if self._sock is None and time.monotonic() >= self._retry_at:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(SEND_TIMEOUT_S)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                self._retry_at = time.monotonic() + RECONNECT_S
                return None
            self._sock = sock
        return self._sock

    def encode(self, record: logging.LogRecord) -> bytes:
        """``record`` flattened, tagged and as one line of JSON (at most :data:`MAX_RECORD_BYTES`)."""
        out = _flatten(record)
        if self.camera is not None or not isinstance(getattr(out, "camera", None), str):
            out.camera = self.camera
        out.role = self.role
        data = json.dumps(out.__dict__, ensure_ascii=False).encode("utf-8", errors="replace")
        if len(data) > MAX_RECORD_BYTES:
            keep = MAX_RECORD_BYTES // 4  # characters; up to 4 bytes each
            out.msg = str(out.msg)[:keep] + " …(cut)"
            out.exc_text = (out.exc_text or "")[-keep:] or None
            data = json.dumps(out.__dict__, ensure_ascii=False).encode("utf-8", errors="replace")
        return data + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record``; when the router is not there, drop it (and count it)."""
        try:
            data = self.encode(record)
            sock = self._connect()
            if sock is None:
                self.dropped += 1
                return
            sock.sendall(data)
        except OSError:
            self.dropped += 1
            if self._sock is not None:
                self._sock.close()
                self._sock = None
                self._retry_at = time.monotonic() + RECONNECT_S
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Close the connection."""
        with self.lock or contextlib.nullcontext():
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        super().close()


def child_logging(address: str, camera: str | None, process: str, level: str) -> None:
    """Send this process's logging to the supervisor's :class:`LogRouter` (call it first in a child).

    Args:
        address: :attr:`LogRouter.address`, passed to the child as a process argument.
        camera: the camera the process works for (None for shared processes such as detectors).
        process: the process's role, e.g. ``"ingest"``, ``"pipeline"``, ``"detector-cpu"``.
        level: ``debug``, ``info``, ``warning`` or ``error`` (``config.logging.level``).

    Records are formatted here (message, traceback), masked and reduced to
    plain values, so an odd argument never breaks logging. Python warnings
    are logged too. A record the router cannot take within
    :data:`SEND_TIMEOUT_S` seconds is dropped, never queued without bound.
    """
    lvl = _level(level)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(_ChildHandler(address, camera, process))
    root.setLevel(lvl)
    _quiet_libav(lvl)
    logging.captureWarnings(True)


# --------------------------------------------------------------------------- the supervisor side


class _LogFile(logging.handlers.RotatingFileHandler):
    """A rotating file created 0600; with ``backupCount`` 0 a full file is truncated instead."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.baseFilename, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise

    def doRollover(self) -> None:  # noqa: N802 (stdlib name)
        """Rename ``x.log`` to ``x.log.1`` (and so on), or truncate it when no backups are kept."""
        if self.backupCount > 0:
            super().doRollover()
            return
        if self.stream:
            self.stream.close()
        self.stream = self._open()
        self.stream.truncate(0)


class _Peer:
    """One child's connection and the part of a line received so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""


class LogRouter:
    """The supervisor's single log writer: main log, per-camera logs, console.

    Args:
        config: the node's configuration (``logs_path`` and ``logging`` settings).
        console: also write the main stream to stderr.
        level: overrides ``config.logging.level`` (e.g. ``"debug"`` for ``--verbose``).

    Usage::

        router = LogRouter(config)
        router.start()      # the supervisor's own logging goes through it too
        ctx.Process(target=main, args=(router.address, ...))  # child: child_logging(address, ...)
        ...
        router.stop(timeout=2.0)
    """

    def __init__(self, config: Config, *, console: bool = True, level: str | None = None) -> None:
        self.dir = config.logs_path
        self.settings = config.logging
        if level is not None:
            _level(level)  # a bad name fails here
            self.settings = config.logging.model_copy(update={"level": level.lower()})
        self._console = console
        self._lock = threading.RLock()
        self._main: _LogFile | None = None
        self._stream: logging.Handler | None = None
        self._cameras: dict[str, _LogFile] = {}
        self._thread: threading.Thread | None = None
        self._saved: tuple[list[logging.Handler], int] | None = None
        self._tag = _TagFilter()
        self._file_fmt = logging.Formatter(FILE_FORMAT, DATE_FORMAT)
        self._dropped = 0
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._late = False
        self._sockdir = Path(tempfile.mkdtemp(prefix="camfleet-log-"))  # 0700
        self.address = str(self._sockdir / "router.sock")
        """Where children send their records: give it to :func:`child_logging`."""
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.address)
        self._server.listen(256)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()

    # ---- paths -----------------------------------------------------------
    @property
    def main_path(self) -> Path:
        """The main log file."""
        return self.dir / MAIN_LOG

    def camera_path(self, camera: str) -> Path:
        """The log file of ``camera``."""
        return self.dir / f"{camera}.log"

    # ---- lifetime --------------------------------------------------------
    def start(self) -> None:
        """Create the logs directory (0700), open the main log, start the listener thread.

        The calling process's root logger is routed through the router as well
        (its previous handlers come back on :meth:`stop`).
        """
        if self._thread is not None:
            return
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        level = _level(self.settings.level)
        self._main = self._open(self.main_path)
        if self._console:
            stream = logging.StreamHandler(sys.stderr)
            stream.setFormatter(logging.Formatter(CONSOLE_FORMAT))
            stream.setLevel(level)
            self._stream = stream
        root = logging.getLogger()
        self._saved = (root.handlers[:], root.level)
        root.handlers[:] = [_SupervisorHandler(self)]
        root.setLevel(level)
        _quiet_libav(level)
        logging.captureWarnings(True)
        self._thread = threading.Thread(target=self._listen, name="camfleet-logs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Write what the children already sent (for at most ``timeout`` seconds), then close everything.

        Returns False when that could not be done in time (the rest is dropped).
        """
        thread, self._thread = self._thread, None
        if self._saved is not None:
            root = logging.getLogger()
            root.handlers[:], level = self._saved
            root.setLevel(level)
            self._saved = None
        drained = True
        if thread is not None:
            self._drain_until = time.monotonic() + timeout
            self._stopping.set()
            os.write(self._wake_w, b"x")
            thread.join(timeout + 1.0)
            drained = not thread.is_alive() and not self._late
        with self._lock:
            for handler in [self._main, self._stream, *self._cameras.values()]:
                if handler is not None:
                    handler.close()
            self._main = self._stream = None
            self._cameras.clear()
        if thread is None or not thread.is_alive():
            self._close_transport()
        return drained

    def _close_transport(self) -> None:
        self._server.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._sockdir, ignore_errors=True)

    def update(self, settings: LogSettings) -> None:
        """Apply new ``max_bytes``, ``backups`` and ``level`` (on reload) to every open log.

        Children keep the level they were started with until they restart.
        """
        level = _level(settings.level)
        with self._lock:
            self.settings = settings
            for handler in [self._main, *self._cameras.values()]:
                if handler is not None:
                    handler.maxBytes = settings.max_bytes
                    handler.backupCount = settings.backups
                    handler.setLevel(level)
            if self._stream is not None:
                self._stream.setLevel(level)
        if self._thread is not None:
            logging.getLogger().setLevel(level)
            _quiet_libav(level)

    def close_camera(self, name: str) -> None:
        """Close ``name``'s log file (a removed camera); a late record opens it again."""
        with self._lock:
            handler = self._cameras.pop(name, None)
        if handler is not None:
            handler.close()

    @property
    def open_cameras(self) -> list[str]:
        """Cameras whose log file is open now."""
        with self._lock:
            return sorted(self._cameras)

    @property
    def dropped(self) -> int:
        """Records that could not be written (malformed, cut off by a dying child, or a handler failed)."""
        return self._dropped

    def __enter__(self) -> LogRouter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the listener ----------------------------------------------------
    def _open(self, path: Path) -> _LogFile:
        handler = _LogFile(path, self.settings.max_bytes, self.settings.backups)
        handler.setFormatter(self._file_fmt)
        handler.setLevel(_level(self.settings.level))
        return handler

    def _listen(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        peers: dict[int, _Peer] = {}
        try:
            while True:
                stopping = self._stopping.is_set()
                if stopping and time.monotonic() >= self._drain_until:
                    self._late = True
                    return
                events = sel.select(0 if stopping else None)
                if stopping and all(key.data == "wake" for key, _ in events):
                    return  # nothing more is waiting: drained
                for key, _mask in events:
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 64)
                    elif key.data is None:
                        self._accept(sel, peers)
                    else:
                        self._receive(sel, peers, key.data)
        finally:
            for peer in peers.values():
                peer.sock.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, peers: dict[int, _Peer]) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of descriptors: the child retries later
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.geteuid():
                sock.close()
                continue
            sock.setblocking(False)
            peer = _Peer(sock)
            peers[sock.fileno()] = peer
            sel.register(sock, selectors.EVENT_READ, peer)

    def _receive(self, sel: selectors.BaseSelector, peers: dict[int, _Peer], peer: _Peer) -> None:
        try:
            data = peer.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the child closed (or died): a partial line is lost
            if peer.buf:
                self._dropped += 1
            sel.unregister(peer.sock)
            peers.pop(peer.sock.fileno(), None)
            peer.sock.close()
            return
        *lines, peer.buf = (peer.buf + data).split(b"\n")
        if len(peer.buf) > 2 * MAX_RECORD_BYTES:
            peer.buf = b""  # not a camfleet child: ignore the runaway line
            self._dropped += 1
        for line in lines:
            self._handle_line(line)

    def _handle_line(self, line: bytes) -> None:
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict):
                raise ValueError("not an object")
            record = logging.makeLogRecord(fields)
            self.handle(record)
        except Exception:  # the listener must outlive any one bad record
            self._dropped += 1

    def handle(self, record: logging.LogRecord) -> None:
        """Write ``record`` to the main log, the console and its camera's log."""
        record = _flatten(record)
        self._tag.filter(record)
        camera = getattr(record, "camera", None)
        with self._lock:
            targets: list[logging.Handler] = [h for h in (self._main, self._stream) if h is not None]
            if isinstance(camera, str) and _CAMERA_RE.fullmatch(camera) and self._main is not None:
                path = self.camera_path(camera)
                if path != self.main_path:
                    cam_file = self._cameras.get(camera)
                    if cam_file is None:
                        try:
                            cam_file = self._cameras[camera] = self._open(path)
                        except OSError as exc:  # the main log still gets the line
                            self._dropped += 1
                            print(f"camfleet: cannot open {path}: {exc.strerror}", file=sys.stderr)
                    if cam_file is not None:
                        targets.append(cam_file)
            for handler in targets:
                if record.levelno >= handler.level:
                    try:
                        handler.handle(record)
                    except Exception:
                        self._dropped += 1


class _SupervisorHandler(logging.Handler):
    """The supervisor's own records, written by the router in the logging thread."""

    def __init__(self, router: LogRouter) -> None:
        super().__init__()
        self.router = router

    def emit(self, record: logging.LogRecord) -> None:
        """Hand ``record`` to the router; it keeps no ``role``, so it is tagged ``node``."""
        try:
            self.router.handle(record)
        except Exception:
            self.handleError(record)
