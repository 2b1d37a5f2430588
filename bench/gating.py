"""Benchmark: what motion gating asks of the detector on the capacity bench's scenes (counts, not timings).

Run from the repository root::

    .venv/bin/python bench/gating.py                     # both profiles, 2 cameras, 40 s each (~30 s)
    PYTHONPATH=<other tree>/src:testing/src .venv/bin/python bench/gating.py   # another tree's code

The same frames ``bench/capacity.py`` analyses, without its RTSP server, processes and
CPU contention: each camera's scene (``camfleet.ingest.scene``, the capacity bench's
objects and seeds, objects in the picture all the time or 25 % of every 20 s period) is
rendered at 1280x720 15 fps, encoded and decoded with x264 as the simulator does (ultrafast,
zerolatency, 2000 kbit/s, keyframe every 30 frames), scaled to 640x360 and thinned to 5 fps
like the ingest, and run through the capacity bench's pipeline (motion -> detect -> track ->
zones -> events) with the default model in this process. Printed per profile: inferences
(model runs on one crop) per camera-second, split into frames with and without objects;
detection recall against the scene's ground truth (IoU >= 0.5, same label) by label. Every
figure is a count, so two trees compare exactly from runs minutes apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from camfleet.detect.models import default_model_spec
from camfleet.detect.runtime import Runtime, load_runtime
from camfleet.framebus import PixelFormat
from camfleet.ingest.scene import Scene
from camfleet.pipeline import Box, FrameContext, Pipeline, PipelineEnv
from camfleet_testing.sim.server import CameraSpec

CAM_W, CAM_H, CAM_FPS, CAM_KBPS, CAM_GOP = 1280, 720, 15, 2000, 30  # as bench/capacity.py
DET_W, DET_H, DET_FPS = 640, 360, 5
SIM_OBJECTS = [("person", "cat"), ("person", "motorcycle"), ("person",), ("cat", "motorcycle")]
PROFILES = {"always": 1.0, "typical": 0.25}
PERIOD_S = 20.0  # bench/capacity.py's default window, which is its period
PIPELINE: list[tuple[str, dict[str, Any]]] = [  # bench/capacity.py's full pipeline
    ("motion", {}),
    ("detect", {"model": "ssd-mobilenet-v2", "detector": "cpu", "min_score": 0.5}),
    ("track", {"fps": DET_FPS, "max_disappeared_s": 3}),
    ("zones", {}),
    ("events", {"min_frames": 3}),
]


class CountingDetector:
    """The detect element's detector (``input_size``, ``detect(images)``): a runtime in this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.input_size = runtime.input_size
        self.images = 0

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Any]]:
        """Detections per image; counts the images."""
        self.images += len(images)
        return self.runtime.infer(list(images))


def camera_frames(seed: int, active: float, seconds: float) -> Iterator[tuple[int, np.ndarray, list[Any]]]:
    """(frame index, I420 640x360 frame, ground truth boxes at 640x360) of each analysed frame."""
    objects = SIM_OBJECTS[seed % len(SIM_OBJECTS)]
    spec = CameraSpec(name=f"cam{seed}", width=CAM_W, height=CAM_H, fps=CAM_FPS, bitrate_kbps=CAM_KBPS,
                      gop=CAM_GOP, seed=seed, objects=objects, active=active, active_period_s=PERIOD_S)
    scene = Scene(CAM_W, CAM_H, seed=seed, objects=objects)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = CAM_W, CAM_H, "yuv420p"
    enc.time_base = Fraction(1, CAM_FPS)
    enc.bit_rate = CAM_KBPS * 1000
    enc.gop_size = CAM_GOP
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    dec = av.CodecContext.create("h264", "r")
    every = CAM_FPS // DET_FPS
    sx = DET_W / CAM_W
    for idx in range(int(seconds * CAM_FPS)):
        shows = spec.is_active(idx)
        raw = av.VideoFrame.from_ndarray(scene.render_i420(idx) if shows else scene.background_i420(),
                                         format="yuv420p")
        raw.pts = idx
        decoded = [f for pkt in enc.encode(raw) for f in dec.decode(pkt)]
        if idx % every or not decoded:
            continue
        img = decoded[-1].to_ndarray()
        planes = (img[:CAM_H], img[CAM_H:CAM_H * 5 // 4].reshape(CAM_H // 2, CAM_W // 2),
                  img[CAM_H * 5 // 4:].reshape(CAM_H // 2, CAM_W // 2))
        sizes = ((DET_W, DET_H), (DET_W // 2, DET_H // 2), (DET_W // 2, DET_H // 2))
        out = np.concatenate([cv2.resize(p, s, interpolation=cv2.INTER_AREA).ravel()
                              for p, s in zip(planes, sizes, strict=True)]).reshape(DET_H * 3 // 2, DET_W)
        truth = [(label, Box(x0 * sx, y0 * sx, x1 * sx, y1 * sx))
                 for label, x0, y0, x1, y1 in scene.boxes(idx)] if shows else []
        yield idx, out, truth


def run_camera(seed: int, active: float, seconds: float, runtime: Runtime, data_dir: Path) -> dict[str, Any]:
    """One camera through the pipeline: inference and recall counts."""
    det = CountingDetector(runtime)
    p = Pipeline(PIPELINE, PipelineEnv(camera=f"cam{seed}", data_dir=data_dir,
                                       services={"detectors": {"cpu": det}}))
    r: dict[str, Any] = {"frames": 0, "frames_objects": 0, "inf_objects": 0, "inf_empty": 0,
                         "motion_empty": 0, "truth": {}, "found": {}}
    for idx, img, truth in camera_frames(seed, active, seconds):
        before = det.images
        ctx = p.process(FrameContext(camera=f"cam{seed}", seq=r["frames"] + 1, pts=idx,
                                     capture_ns=10**18 + round(idx * 1e9 / CAM_FPS), width=DET_W,
                                     height=DET_H, pixel_format=PixelFormat.YUV420P, image=img))
        r["frames"] += 1
        n = det.images - before
        if truth:
            r["frames_objects"] += 1
            r["inf_objects"] += n
        else:
            r["inf_empty"] += n
            r["motion_empty"] += bool(ctx.motion)
        for label, box in truth:
            r["truth"][label] = r["truth"].get(label, 0) + 1
            hit = any(d.label == label and d.box.iou(box) >= 0.5 for d in ctx.detections)
            r["found"][label] = r["found"].get(label, 0) + hit
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    ap.add_argument("--cams", type=int, default=2, help="cameras (the capacity bench's first N)")
    ap.add_argument("--seconds", type=float, default=2 * PERIOD_S, help="per camera (default 40)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-gating.json"), help="raw results")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    runtime = load_runtime(default_model_spec(), threads=1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gating-") as tmp:
        for profile in args.profiles:
            cams = [run_camera(i, PROFILES[profile], args.seconds, runtime, Path(tmp))
                    for i in range(args.cams)]
            frames = sum(c["frames"] for c in cams)
            cam_s = frames / DET_FPS
            truth: dict[str, int] = {}
            found: dict[str, int] = {}
            for c in cams:
                for k, v in c["truth"].items():
                    truth[k] = truth.get(k, 0) + v
                    found[k] = found.get(k, 0) + c["found"][k]
            inf_obj, inf_empty = sum(c["inf_objects"] for c in cams), sum(c["inf_empty"] for c in cams)
            rows.append({
                "profile": profile, "cameras": args.cams, "frames": frames, "camera_s": cam_s,
                "inf_per_cam_s": (inf_obj + inf_empty) / cam_s,
                "floor_per_cam_s": sum(c["frames_objects"] for c in cams) / cam_s,
                "inferences_objects": inf_obj, "inferences_empty": inf_empty,
                "frames_objects": sum(c["frames_objects"] for c in cams),
                "motion_frames_empty": sum(c["motion_empty"] for c in cams),
                "recall": sum(found.values()) / max(1, sum(truth.values())),
                "recall_by_label": {k: found[k] / truth[k] for k in sorted(truth)},
            })
    runtime.close()
    print(f"gating bench: the capacity bench's scenes, {args.cams} cameras x {args.seconds:g} s, "
          f"{DET_W}x{DET_H} @ {DET_FPS} fps analysed")
    for r in rows:
        labels = ", ".join(f"{k} {v:.3f}" for k, v in r["recall_by_label"].items())
        empty = r["frames"] - r["frames_objects"]
        print(f"  {r['profile']:8s} {r['inf_per_cam_s']:.3f} inferences per camera-second (one per frame "
              f"with objects: {r['floor_per_cam_s']:.3f}); {r['inferences_objects']} on "
              f"{r['frames_objects']} frames with objects, {r['inferences_empty']} on {empty} without "
              f"({r['motion_frames_empty']} of them with motion); recall {r['recall']:.3f} ({labels})")
    print(f"{time.perf_counter() - t0:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"bench": "gating", "args": vars(args) | {"json": str(args.json)},
                                     "pipeline": PIPELINE, "results": rows}, indent=1))
    print(f"raw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
