"""The node runtime, first slice: one ingest and one pipeline process per camera, shared detectors.

:class:`Node` starts, for a validated :class:`~camfleet.config.Config`:

* one detector process per detector the pipelines use (a
  :class:`~camfleet.detect.service.DetectorManager`, which restarts it when it
  dies or hangs);
* per camera, an ingest process (decode once, publish to the camera's rings)
  and a pipeline process (read the frame ring, run the camera's pipeline, write
  events to ``<data_dir>/events.jsonl`` and snapshots under
  ``<data_dir>/snapshots``).

A process that exits is started again after a back-off without touching the
other cameras; stopping escalates from SIGTERM to SIGKILL. Health states,
live reconfiguration, per-camera logs and metrics come with the rest of the
runtime work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camfleet import framebus
from camfleet.config import Config
from camfleet.detect.models import DEFAULT_MODEL_FILE, ModelSpec, default_model_spec
from camfleet.detect.service import DetectorClient, DetectorFailed, DetectorManager, DetectorSettings
from camfleet.framebus import PixelFormat
from camfleet.ingest import IngestConfig, IngestWorker, OutputSpec, SourceOptions
from camfleet.pipeline import EventUpdate
from camfleet.pipeline.build import camera_pipeline

log = logging.getLogger("camfleet.runtime")


def model_spec(config: Config, model_id: str) -> ModelSpec:
    """The :class:`ModelSpec` of model ``model_id`` of the configuration."""
    m = config.models[model_id]
    path = config.resolve_path(m.path)
    if path.name == DEFAULT_MODEL_FILE and m.runtime == "tflite":
        return default_model_spec(path.parent)  # the default model, sha256-checked
    labels: Path | tuple[str, ...] | None
    if isinstance(m.labels, list):
        labels = tuple(m.labels)
    else:
        labels = config.resolve_path(m.labels) if m.labels else None
    return ModelSpec(
        id=model_id, path=path, runtime=m.runtime, input_size=(m.input.width, m.input.height),
        labels=labels, output="ssd_postprocess" if m.runtime == "tflite" else "yolov8",
    )


def detector_models(config: Config) -> dict[str, str]:
    """Which model each used detector serves (detector name -> model id)."""
    used: dict[str, str] = {}
    for name in config.cameras:
        for element in config.pipeline_of(name):
            if element.name != "detect":
                continue
            detector = str(element.params.get("detector", "cpu"))
            model = str(element.params.get("model", "ssd-mobilenet-v2"))
            if used.setdefault(detector, model) != model:
                raise ValueError(
                    f"detector {detector!r} is asked to run two models ({used[detector]!r} and "
                    f"{model!r}); give each model its own detector"
                )
    return used


def _ingest_main(config: Config, camera: str) -> None:
    """An ingest process: the camera's detect stream into its rings."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cam = config.camera(camera)
    src = cam.detect_source
    opts = SourceOptions(
        transport=src.transport or "tcp",
        open_timeout=src.open_timeout or 10.0,
        stall_timeout=src.stall_timeout or 10.0,
        loop=src.loop,
        realtime=src.realtime,
        hwaccel=src.hwaccel,
    )
    out = OutputSpec(PixelFormat.YUV420P, cam.detect.width, cam.detect.height, cam.detect.fps)
    IngestWorker(IngestConfig(url=src.url, key=camera, source=opts, output=out)).run(stop)


def _pipeline_main(
    config: Config, camera: str, detectors: dict[str, tuple[str, tuple[int, int]]]
) -> None:
    """A pipeline process: the camera's frames through its pipeline, events to a file.

    ``detectors`` maps a configured detector name to the process serving this
    camera and the model's input size.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    clients = {name: DetectorClient(instance, camera, size) for name, (instance, size) in detectors.items()}
    pipeline = camera_pipeline(config, camera, services={"detectors": clients})
    events_file = config.data_path / "events.jsonl"
    pipeline.start()
    try:
        while not stop.is_set():
            try:
                with framebus.subscribe(camera, mode="latest", name="pipeline", connect_timeout=1.0) as sub:
                    while not stop.is_set():
                        try:
                            with sub.next(timeout=0.5) as frame:
                                ctx = pipeline.process_frame(frame)
                        except framebus.FrameTimeout:
                            continue
                        except DetectorFailed as exc:
                            log.warning("camera %s: %s", camera, exc)
                            continue
                        for update in ctx.events:
                            if isinstance(update, EventUpdate):
                                record = {"type": update.type.value, **update.event.public()}
                                with events_file.open("a") as f:
                                    f.write(json.dumps(record) + "\n")
            except (framebus.PublisherGone, framebus.NotFound):
                continue  # the ingest process restarts or re-creates the ring
    finally:
        pipeline.stop()
        for client in clients.values():
            client.close()


@dataclass
class _Child:
    name: str
    target: Any
    args: tuple[Any, ...]
    proc: Any = None
    restarts: int = 0
    next_start: float = 0.0
    delay: float = 0.5
    history: list[float] = field(default_factory=list)


class Node:
    """Runs a configuration on this machine until :meth:`stop`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx = mp.get_context("spawn")
        self._detectors: dict[str, DetectorManager] = {}
        self._children: list[_Child] = []
        self._stop = threading.Event()

    def start(self) -> None:
        """Start detectors, then each enabled camera's ingest and pipeline processes."""
        cfg = self.config
        cfg.data_path.mkdir(parents=True, exist_ok=True)
        instances: dict[str, list[str]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for detector, model in detector_models(cfg).items():
            d = cfg.detectors[detector]
            spec = model_spec(cfg, model)
            assert spec.input_size is not None
            sizes[detector] = spec.input_size
            # `processes` detector processes share the detector's cameras between them
            names = [detector] if d.processes == 1 else [f"{detector}-{i}" for i in range(d.processes)]
            instances[detector] = names
            for instance in names:
                settings = DetectorSettings(name=instance, model=spec, threads=d.threads,
                                            max_batch=d.max_batch, max_wait_ms=d.max_wait_ms)
                manager = DetectorManager(settings)
                manager.start()
                self._detectors[instance] = manager
        enabled = [name for name, cam in cfg.cameras.items() if cam.enabled]
        for i, name in enumerate(enabled):
            assigned = {d: (names[i % len(names)], sizes[d]) for d, names in instances.items()}
            self._children.append(_Child(f"{name}/ingest", _ingest_main, (cfg, name)))
            self._children.append(_Child(f"{name}/pipeline", _pipeline_main, (cfg, name, assigned)))
        for child in self._children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        child.proc = self._ctx.Process(target=child.target, args=child.args,
                                       name=f"camfleet-{child.name}", daemon=False)
        child.proc.start()

    def supervise(self, period: float = 0.5) -> None:
        """Restart exited processes (with back-off) until :meth:`stop` is called."""
        while not self._stop.wait(period):
            now = time.monotonic()
            for child in self._children:
                if child.proc.is_alive():
                    continue
                if child.next_start == 0.0:
                    log.warning("%s exited (code %s); restarting in %.1f s",
                                child.name, child.proc.exitcode, child.delay)
                    child.next_start = now + child.delay
                    child.delay = min(child.delay * 2, 30.0)
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.restarts += 1
                    self._spawn(child)

    def processes(self) -> dict[str, int | None]:
        """Name -> pid of every process the node runs."""
        out: dict[str, int | None] = {f"detector/{n}": m.pid for n, m in self._detectors.items()}
        out.update({c.name: c.proc.pid if c.proc is not None else None for c in self._children})
        return out

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every process: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        self._stop.set()
        for child in self._children:
            if child.proc is not None and child.proc.is_alive():
                child.proc.terminate()
        deadline = time.monotonic() + timeout
        for child in self._children:
            if child.proc is not None:
                child.proc.join(max(deadline - time.monotonic(), 0.1))
                if child.proc.is_alive():
                    child.proc.kill()
                    child.proc.join(2)
        for manager in self._detectors.values():
            with contextlib.suppress(Exception):
                manager.stop()
