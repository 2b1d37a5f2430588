"""Replay clips: a simulated camera's stream encoded once, cached on disk, replayed by the RTSP server.

A clip holds :func:`clip_frames` frames of the camera's scene (one ``active_period_s``, so the
activity schedule of :meth:`CameraSpec.is_active` repeats exactly when the clip loops), rendered
by :class:`~camfleet.ingest.scene.Scene` and encoded with PyAV's libx264 with the live server's
settings (baseline profile, ultrafast, zerolatency, no B-frames, the camera's bitrate and GOP,
CBR-like VBV of 600 ms as GStreamer's ``x264enc`` does, SPS/PPS in front of every keyframe). The
file layout is :func:`camfleet_testing.sim._gst_server.read_clip`'s.

Clips are cached by their content (:func:`clip_key`) in :func:`default_cache_dir`, so N cameras
alike and repeated runs encode once; files are written to a temporary name and renamed, so a
reader never sees half a clip, whatever dies when.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from . import _gst_server as proto

if TYPE_CHECKING:
    from .server import CameraSpec

__all__ = ["CLIP_VERSION", "clip_frames", "clip_key", "default_cache_dir", "encode_clip", "ensure_clips"]

CLIP_VERSION = 1  # bump when the encoding or the layout changes: old cache entries are then not found
_VBV_MS = 600  # GStreamer x264enc's default vbv-buf-capacity (ms), which its pass=cbr applies
_STALE_TMP_S = 3600.0  # s: a temporary file this old was left by a writer that died
_UNUSED_S = 14 * 86400.0  # s: a cached clip not used for this long is deleted


def default_cache_dir() -> Path:
    """Where clips are cached: ``$CAMFLEET_SIM_CLIPS``, else ``$XDG_CACHE_HOME/camfleet/sim-clips``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    env = os.environ.get("CAMFLEET_SIM_CLIPS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "camfleet" / "sim-clips"


def clip_frames(spec: CameraSpec) -> int:
    """Frames in ``spec``'s clip: one ``active_period_s`` at its frame rate (at least 1)."""
    return max(1, round(spec.active_period_s * spec.fps))


def _x264_params(spec: CameraSpec) -> str:
    return (f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes=0:aud=1:repeat-headers=1:"
            f"vbv-maxrate={spec.bitrate_kbps}:vbv-bufsize={spec.bitrate_kbps * _VBV_MS // 1000}")


def clip_key(spec: CameraSpec) -> str:
    """A hex digest of everything that decides the clip's bytes (never the camera's name)."""
    content = {
        "version": CLIP_VERSION, "codec": spec.codec, "width": spec.width, "height": spec.height,
        "fps": spec.fps, "bitrate_kbps": spec.bitrate_kbps, "gop": spec.gop, "seed": spec.seed,
        "objects": list(spec.objects), "active": min(1.0, spec.active),
        # an always-active camera's content does not depend on the period, only its length does
        "period": spec.active_period_s if spec.active < 1.0 else None, "frames": clip_frames(spec),
        "x264": _x264_params(spec),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def encode_clip(spec: CameraSpec) -> tuple[int, int, list[tuple[bytes, bool]]]:
    """Render and encode ``spec``'s clip: ``(width, height, [(access unit, is keyframe), ...])``.

    Frame ``i`` is what the live simulator sends as frame ``i``: the scene with its objects when
    ``spec.is_active(i)``, the empty background otherwise. Costs ~5 ms per 720p frame (one thread).
    """
    import av  # noqa: PLC0415  (only replay needs PyAV's encoder here)

    from camfleet.ingest.scene import Scene  # noqa: PLC0415

    if spec.codec != "h264":
        raise ValueError(f"camera {spec.name!r}: replay mode encodes h264 only, got {spec.codec!r}")
    scene = Scene(spec.width, spec.height, seed=spec.seed, objects=spec.objects)
    ctx = av.CodecContext.create("libx264", "w")
    rate = Fraction(spec.fps).limit_denominator(1001)
    ctx.width, ctx.height, ctx.pix_fmt = spec.width, spec.height, "yuv420p"
    ctx.framerate, ctx.time_base = rate, 1 / rate
    ctx.bit_rate = spec.bitrate_kbps * 1000
    ctx.gop_size, ctx.max_b_frames, ctx.thread_count = spec.gop, 0, 1  # threads=1 as live: one slice a frame
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                   "x264-params": _x264_params(spec)}
    units: list[tuple[bytes, bool]] = []
    for i in range(clip_frames(spec)):
        image = scene.render_i420(i) if spec.is_active(i) else scene.background_i420()
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        units += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    units += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None)]
    if not units or not units[0][1]:
        raise RuntimeError(f"camera {spec.name!r}: libx264 did not start the clip with a keyframe")
    return spec.width, spec.height, units


def _write(path: Path, width: int, height: int, units: Sequence[tuple[bytes, bool]]) -> None:
    """Write a clip atomically: a temporary file in the same directory, renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".clip", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.CLIP_HEADER.pack(proto.CLIP_MAGIC, width, height, len(units)))
            for data, key in units:
                f.write(proto.AU_HEADER.pack(len(data), proto.AU_KEY if key else 0))
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _valid(path: Path, spec: CameraSpec) -> bool:
    try:
        width, height, units = proto.read_clip(str(path))
    except (OSError, ValueError):
        return False
    return (width, height) == (spec.width, spec.height) and len(units) == clip_frames(spec)


def _prune(directory: Path) -> None:
    """Delete temporary files left by dead writers and clips unused for two weeks."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            with contextlib.suppress(OSError):
                age = now - entry.stat().st_mtime
                if (entry.name.startswith(".tmp-") and age > _STALE_TMP_S) or (
                        entry.suffix == ".clip" and age > _UNUSED_S):
                    entry.unlink()


def ensure_clips(specs: Sequence[CameraSpec], cache_dir: Path | None = None, workers: int = 2
                 ) -> dict[str, Path]:
    """The clip file of each camera (by name), encoding those not cached yet; ``workers`` threads encode.

    A cached file that does not parse, or has another size or length, is encoded again.
    """
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _prune(directory)
    paths = {spec.name: directory / f"{clip_key(spec)}.clip" for spec in specs}
    todo: dict[Path, CameraSpec] = {}
    for spec in specs:
        path = paths[spec.name]
        if path not in todo and not _valid(path, spec):
            todo[path] = spec

    def one(item: tuple[Path, CameraSpec]) -> None:
        path, spec = item
        _write(path, *encode_clip(spec))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo) or 1))) as pool:
        list(pool.map(one, todo.items()))  # PyAV and numpy release the GIL while they work
    for path in set(paths.values()):
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: kept by _prune
    return paths
