"""Start-up checks: what would make the node fail, found before any process starts.

:func:`preflight` returns a :class:`Problem` for each of:

* the shared-memory directory (``/dev/shm`` or ``$CAMFLEET_SHM_DIR``) has too
  little room for the rings of the enabled cameras (sizes as the framebus and
  the detector service export them, exactly: :func:`ring_bytes`);
* a model file (or labels file) a pipeline uses is missing or, for the default
  model, damaged;
* the API port is taken;
* the data directory or the logs directory cannot be created or written.

Each problem says what is wrong and what to do about it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from camfleet.config.model import Config
from camfleet.detect.models import (
    DEFAULT_LABELS_FILE,
    DEFAULT_MODEL_FILE,
    ModelError,
    default_model_spec,
    models_dir,
    verify_model,
)
from camfleet.detect.protocol import request_ring_key
from camfleet.framebus import frame_ring_bytes, packet_ring_bytes, shm_dir
from camfleet.framebus.segment import list_segments

from .detect_use import DetectUse, detect_uses, detector_instances
from .kinds import ASSUMED_SOURCE_SIZE, RingBytes, camera_rings

__all__ = [
    "ASSUMED_SOURCE_SIZE",
    "Problem",
    "RingBytes",
    "SpaceFn",
    "camera_ring_bytes",
    "check_api_port",
    "check_dirs",
    "check_models",
    "check_shm",
    "frame_ring_bytes",
    "packet_ring_bytes",
    "preflight",
    "ring_bytes",
]

SpaceFn = Callable[[Path], tuple[int, int]]
"""``(free, total)`` bytes of a directory's file system."""


@dataclass(frozen=True)
class Problem:
    """Something that would stop the node or one of its cameras, and how to fix it.

    ``kind`` is one of ``shm``, ``model``, ``port``, ``data_dir``, ``logs_dir``.
    """

    kind: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}"


# --------------------------------------------------------------------------- ring sizes


def _uses(config: Config, camera: str) -> list[DetectUse]:
    """The camera's detect elements; none when their settings are invalid (the node reports those)."""
    try:
        return detect_uses(config, camera)
    except ValidationError:
        return []


def camera_ring_bytes(config: Config, camera: str) -> RingBytes:
    """The shared memory ``camera`` needs: its frame ring, packet ring and detector request rings.

    Each process kind says what its rings take (:meth:`camfleet.runtime.kinds.CameraKind.rings`):
    the frame ring holds ``detect.width``x``detect.height`` yuv420p frames
    (the stream's own size when not set: a synthetic URL's, else
    :data:`ASSUMED_SOURCE_SIZE`) in as many slots as ingest uses; the packet
    ring has ingest's capacity; each detector the pipeline uses gets one
    request ring of RGB images at its model's input size.
    """
    return camera_rings(config, camera)


def ring_bytes(config: Config) -> dict[str, int]:
    """Shared-memory bytes of each enabled camera's rings (camera -> bytes): :func:`camera_ring_bytes`."""
    return {name: camera_ring_bytes(config, name).total
            for name, cam in config.cameras.items() if cam.enabled}


# --------------------------------------------------------------------------- checks


def _statvfs_space(path: Path) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def _ring_keys(config: Config, camera: str) -> set[str]:
    keys = {camera}
    for detector, _model in _uses(config, camera):
        d = config.detectors.get(detector)
        instances = detector_instances(detector, d.processes if d is not None else 1)
        keys.update(request_ring_key(camera, i) for i in instances)
    return keys


def check_shm(config: Config, space: SpaceFn | None = None) -> list[Problem]:
    """Check there is room in the shared-memory directory for every enabled camera's rings.

    ``space`` gives ``(free, total)`` bytes of a directory's file system
    (default: :func:`os.statvfs`). Segments these cameras left behind (a
    crashed run) count as free: they are replaced.
    """
    directory = shm_dir()
    cameras = [name for name, cam in config.cameras.items() if cam.enabled]
    if not cameras:
        return []
    needs = {name: camera_ring_bytes(config, name) for name in cameras}
    required = sum(n.total for n in needs.values())
    try:
        free, total = (space or _statvfs_space)(directory)
    except OSError as exc:
        return [Problem(
            "shm", f"shared-memory directory {directory} is not usable ({exc.strerror or exc})",
            "create it (a tmpfs), or set CAMFLEET_SHM_DIR to one",
        )]
    keys = set().union(*(_ring_keys(config, name) for name in cameras))
    leftover = 0
    for key, _kind, path in list_segments():
        if key in keys:
            with contextlib.suppress(OSError):
                leftover += path.stat().st_blocks * 512
    if free + leftover >= required:
        return []
    frames = sum(n.frames for n in needs.values())
    packets = sum(n.packets for n in needs.values())
    requests = sum(n.requests for n in needs.values())
    message = (
        f"{directory} has {_mib(free + leftover)} free, but the rings of {len(cameras)} camera(s) need "
        f"{_mib(required)} (frames {_mib(frames)}, packets {_mib(packets)}, detector requests "
        f"{_mib(requests)})"
    )
    in_use = total - free - leftover
    host_size = math.ceil((in_use + required * 1.1) / 2**30)
    container = math.ceil(required * 1.1 / 2**26) * 64  # MiB, in steps of 64
    if directory == Path("/dev/shm"):
        fix = (
            f"give /dev/shm at least {_mib(required)}: in Docker `docker run --shm-size={container}m ...` "
            f"(compose: `shm_size: {container}mb`); on the host `sudo mount -o remount,size={host_size}G "
            "/dev/shm`; or disable some cameras, or lower their detect width/height"
        )
    else:
        fix = (
            f"enlarge {directory} (for a tmpfs: `sudo mount -o remount,size={host_size}G {directory}`), "
            "or point CAMFLEET_SHM_DIR at a tmpfs with room; or disable some cameras"
        )
    return [Problem("shm", message, fix)]


def check_models(config: Config) -> list[Problem]:
    """Check every model (and labels file) the enabled cameras' pipelines use exists."""
    problems: list[Problem] = []
    seen: set[str] = set()
    fetch_dir = models_dir()
    for name, cam in config.cameras.items():
        if not cam.enabled:
            continue
        for _detector, model_id in _uses(config, name):
            if model_id in seen:
                continue
            seen.add(model_id)
            model = config.models.get(model_id)
            if model is None:
                problems.append(Problem(
                    "model", f"camera {name!r}: its pipeline uses model {model_id!r}, which is not under "
                    "'models'", f"add models.{model_id} to the configuration, or name a defined model",
                ))
                continue
            path = config.resolve_path(model.path)
            files = [("model file", path)]
            if isinstance(model.labels, str):
                files.append(("labels file", config.resolve_path(model.labels)))
            missing = [(what, file) for what, file in files if not file.is_file()]
            fetchable = [f for _w, f in missing if f.name in (DEFAULT_MODEL_FILE, DEFAULT_LABELS_FILE)]
            if fetchable:
                names = " and ".join(str(f) for f in fetchable)
                fix = f"run `camfleet models fetch` (it downloads the default model into {fetch_dir})"
                if any(f.parent != fetch_dir for f in fetchable):
                    fix += (f", then copy the files to {fetchable[0].parent}, or set models.{model_id}.path "
                            f"to {fetch_dir / DEFAULT_MODEL_FILE}")
                problems.append(Problem(
                    "model", f"model {model_id!r}: default model file(s) {names} missing", fix))
            for what, file in missing:
                if file in fetchable:
                    continue
                key = "path" if what == "model file" else "labels"
                problems.append(Problem(
                    "model", f"model {model_id!r}: {what} {file} does not exist",
                    f"put the file at {file}, or fix models.{model_id}.{key}",
                ))
            if path.name == DEFAULT_MODEL_FILE and model.runtime == "tflite" and path.is_file():
                try:
                    verify_model(default_model_spec(path.parent))
                except ModelError:
                    problems.append(Problem(
                        "model", f"model {model_id!r}: {path} is damaged or not the default model "
                        "(its sha256 is not the expected one)",
                        "run `camfleet models fetch --force` to download it again",
                    ))
    return problems


def check_api_port(config: Config) -> list[Problem]:
    """Check the API can listen on ``api.host:api.port``.

    Binds the way the server does (``SO_REUSEADDR`` on, as uvicorn sets it):
    a port another program listens on is refused, a port left in TIME_WAIT by
    an earlier run is not.
    """
    api = config.api
    if not api.enabled or api.port == 0:
        return []
    family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
    where = f"{api.host}:{api.port}"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((api.host, api.port))
    except socket.gaierror as exc:
        return [Problem("port", f"api.host {api.host!r} does not resolve ({exc.strerror})",
                        "set `api.host` to an address of this machine, e.g. 127.0.0.1")]
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return [Problem(
                "port", f"the API port {api.port} ({where}) is in use by another program",
                f"stop it (`ss -ltnp 'sport = :{api.port}'` shows which), or set `api.port` to a free "
                "port (0 picks any)",
            )]
        if exc.errno == errno.EACCES:
            return [Problem("port", f"no permission to listen on port {api.port} ({where})",
                            "set `api.port` to 1024 or above, or run with the privilege to bind it")]
        if exc.errno == errno.EADDRNOTAVAIL:
            return [Problem("port", f"api.host {api.host!r} is not an address of this machine",
                            "set `api.host` to one of its addresses (127.0.0.1, 0.0.0.0 for all)")]
        return [Problem("port", f"cannot listen on {where} ({exc.strerror or exc})",
                        "check `api.host` and `api.port`")]
    return []


def _unwritable(path: Path, mode: int) -> str | None:
    """Why ``path`` cannot be created or written, or None when it can."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".camfleet-check-"):
            pass
    except FileExistsError:
        return "it exists and is not a directory"
    except NotADirectoryError:
        return "a part of the path is a file, not a directory"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_dirs(config: Config) -> list[Problem]:
    """Check the data directory and the logs directory can be created and written."""
    problems: list[Problem] = []
    data = config.data_path
    why = _unwritable(data, 0o755)
    if why is not None:
        problems.append(Problem(
            "data_dir", f"data directory {data} cannot be created or written: {why}",
            "fix its permissions (owner and mode of it or its parent), or set `data_dir` in the "
            "configuration to a writable directory",
        ))
    logs = config.logs_path
    if why is not None and logs.is_relative_to(data):
        return problems  # the same cause: said once
    why = _unwritable(logs, 0o700)
    if why is not None:
        problems.append(Problem(
            "logs_dir", f"logs directory {logs} cannot be created or written: {why}",
            "fix its permissions, or set `logging.dir` to a writable directory",
        ))
    return problems


def preflight(config: Config, *, check_port: bool = True, space: SpaceFn | None = None) -> list[Problem]:
    """Every problem that would stop the node or a camera: directories, models, API port, shared memory.

    Args:
        config: the configuration about to run.
        check_port: also check the API port (leave it off when the API is already up).
        space: ``(free, total)`` bytes of a directory's file system (default: :func:`os.statvfs`).

    Creates the data and logs directories when they are missing (the node would).
    """
    problems = check_dirs(config) + check_models(config)
    if check_port:
        problems += check_api_port(config)
    return problems + check_shm(config, space)
