"""A node's measured capacity, in the units placement uses, from a short self-benchmark.

* ``decode_pixels_per_s``: H.264 decoding in software (PyAV/FFmpeg, its default
  threading) of a synthetic 640x360 clip encoded at the first start
  (``<data_dir>/capacity/clip.mp4``): decoded frames * width * height / seconds.
* ``inferences_per_s``: the default model (:func:`camfleet.detect.load_runtime`)
  in one single-threaded detector process: images inferred per second.

The result is cached in ``<data_dir>/capacity/capacity.json`` with the
camfleet version and the model's sha256, and measured again only when one
of them changes. A part that cannot be measured (no model yet) is None with
its reason in ``notes`` and is tried again at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from camfleet import __version__

__all__ = ["Capacity", "load_or_measure", "measure_decode", "measure_inference"]

log = logging.getLogger("camfleet.cluster.capacity")

CLIP_SIZE = (640, 360)
CLIP_FRAMES = 30
CLIP_FPS = 24
INFER_SECONDS = 1.0
DECODE_SECONDS = 0.5
SCHEMA = 1


@dataclass
class Capacity:
    """What the benchmark measured (per second), with what it was measured for and when."""

    decode_pixels_per_s: float | None
    inferences_per_s: float | None
    camfleet_version: str
    model_sha256: str | None
    measured_at: float
    notes: list[str] = field(default_factory=list)
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


def _encode_clip(path: Path) -> None:
    """A clip of moving gradients and noise (textures a camera gives, not flat colour), H.264 in MP4."""
    width, height = CLIP_SIZE
    rng = np.random.default_rng(7)
    tmp = path.with_suffix(".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, CLIP_FPS)
        stream.options = {"preset": "ultrafast", "crf": "23"}
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for i in range(CLIP_FRAMES):
            base = (ramp + i * 5) % 256
            noise = rng.integers(0, 40, size=(height, width, 1), dtype=np.uint8)
            image = np.broadcast_to(base, (height, width, 3)).astype(np.uint8) + noise
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(tmp, path)


def measure_decode(clip: Path, seconds: float = DECODE_SECONDS) -> float:
    """Pixels per second decoding ``clip`` repeatedly for about ``seconds`` (encoded first when missing)."""
    if not clip.exists():
        _encode_clip(clip)
    pixels = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        with av.open(str(clip)) as container:
            for frame in container.decode(video=0):
                pixels += frame.width * frame.height
    elapsed = time.perf_counter() - start
    if pixels == 0:
        raise ValueError(f"{clip}: no frame decoded")
    return pixels / max(elapsed, 1e-6)


def measure_inference(seconds: float = INFER_SECONDS) -> tuple[float, str]:
    """(inferences per second of the default model on one thread, the model's sha256)."""
    from camfleet.detect import default_model_spec, load_runtime  # noqa: PLC0415 - heavy, first start only
    from camfleet.detect.models import sha256_file  # noqa: PLC0415

    spec = default_model_spec()
    runtime = load_runtime(spec, threads=1)
    width, height = spec.input_size or (300, 300)
    image = np.random.default_rng(3).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    runtime.infer([image])  # the first call allocates
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or done < 3:
        runtime.infer([image])
        done += 1
    return done / (time.perf_counter() - start), sha256_file(spec.path)


def _model_sha256() -> str | None:
    from camfleet.detect import default_model_spec  # noqa: PLC0415
    from camfleet.detect.models import sha256_file  # noqa: PLC0415

    path = default_model_spec().path
    return sha256_file(path) if path.is_file() else None


def _read_cache(path: Path) -> Capacity | None:
    try:
        data = json.loads(path.read_text())
        return Capacity(**data) if data.get("schema") == SCHEMA else None
    except (OSError, ValueError, TypeError):
        return None


def load_or_measure(data_dir: Path) -> tuple[Capacity, bool]:
    """(capacity, measured now): the cache when still valid, else a new measurement (a few seconds)."""
    folder = data_dir / "capacity"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    cache = folder / "capacity.json"
    model_hash = _model_sha256()
    cached = _read_cache(cache)
    if (cached is not None and cached.camfleet_version == __version__ and cached.model_sha256 == model_hash
            and cached.decode_pixels_per_s is not None and cached.inferences_per_s is not None):
        return cached, False
    notes: list[str] = []
    decode: float | None = None
    infer: float | None = None
    try:
        decode = measure_decode(folder / "clip.mp4")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        notes.append(f"decode benchmark failed: {exc}")
    try:
        infer, model_hash = measure_inference()
    except Exception as exc:  # a missing model or a runtime that cannot load: placement sees None
        notes.append(f"inference benchmark failed: {exc}")
    capacity = Capacity(decode_pixels_per_s=decode, inferences_per_s=infer, camfleet_version=__version__,
                        model_sha256=model_hash, measured_at=time.time(), notes=notes)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(capacity.to_json(), indent=2) + "\n")
    os.replace(tmp, cache)
    log.info("capacity measured: decode %.0f Mpixel/s, %.1f inferences/s%s",
             (decode or 0) / 1e6, infer or 0, f" ({'; '.join(notes)})" if notes else "")
    return capacity, True
