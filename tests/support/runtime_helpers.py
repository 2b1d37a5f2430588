"""Helpers for node runtime tests: configs, state waits through the node's listener, frame-gap counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camfleet import framebus
from camfleet.config import Config, load_config_text
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir
from camfleet.runtime import Node


def camera_yaml(name: str, seed: int = 0, zones: str = "", fps: int = 10, extra: str = "") -> str:
    """One synthetic 320x240 camera with a person walking, analysed at 5 fps."""
    text = (f"  {name}:\n    sources: [{{url: \"synthetic://{name}?width=320&height=240&fps={fps}&seed={seed}"
            f"&objects=person\", roles: [detect]}}]\n")
    if zones:
        text += f"    zones: {zones}\n"
    return text + extra


def config_text(data_dir: Path, cameras: str, runtime: str = "", api: bool = False) -> str:
    """A node configuration with the default model, one detector, and the given cameras' YAML."""
    return f"""
data_dir: {data_dir}
models:
  ssd: {{path: {models_dir() / DEFAULT_MODEL_FILE}, runtime: tflite, input: {{width: 300, height: 300}},
        labels: {models_dir() / DEFAULT_LABELS_FILE}}}
detectors:
  cpu: {{runtime: tflite, threads: 1}}
pipelines:
  p:
    - motion: {{}}
    - detect: {{model: ssd, detector: cpu}}
    - track: {{fps: 5}}
    - zones: {{}}
    - events: {{min_frames: 2}}
defaults: {{pipeline: p, detect: {{width: 320, height: 240, fps: 5}}}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20, backoff_initial: 0.2, backoff_max: 2{runtime}}}
api: {{enabled: {str(api).lower()}, port: 0}}
cameras:
{cameras}"""


def make_config(data_dir: Path, cameras: str, runtime: str = "") -> Config:
    """:func:`config_text` validated."""
    return load_config_text(config_text(data_dir, cameras, runtime))


class States:
    """Waits for camera states through the node's listener (no polling of the status)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._cond = threading.Condition()
        self.history: list[tuple[float, str, str]] = []
        self._unsubscribe = node.add_listener(self._on_message)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "status":
            with self._cond:
                self.history.append((time.monotonic(), message["camera"], message["state"]))
                self._cond.notify_all()

    def current(self, camera: str) -> str:
        cam = self.node.status().cameras.get(camera)
        return cam.state if cam is not None else "removed"

    def wait(self, camera: str, state: str | Callable[[str], bool], timeout: float) -> float:
        """Seconds until ``camera`` is in ``state``; AssertionError after ``timeout``."""
        ok = state if callable(state) else (lambda s: s == state)
        start = time.monotonic()
        with self._cond:
            while not ok(self.current(camera)):
                left = timeout - (time.monotonic() - start)
                assert left > 0, (f"{camera} not {state} within {timeout} s: {self.current(camera)} "
                                  f"({self.node.status().cameras.get(camera)})")
                self._cond.wait(min(left, 0.5))
        return time.monotonic() - start

    def close(self) -> None:
        self._unsubscribe()


class GapCounter:
    """Reads every frame of a camera's ring in a thread and counts sequence gaps and reconnects."""

    def __init__(self, camera: str, shm_dir: Path) -> None:
        self.camera = camera
        self.frames = 0
        self.gaps = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._shm = str(shm_dir)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last: int | None = None
        while not self._stop.is_set():
            try:
                with framebus.subscribe(self.camera, mode="sequential", name="gaps",
                                        connect_timeout=0.5) as sub:
                    while not self._stop.is_set():
                        try:
                            with sub.next(timeout=0.5) as frame:
                                if last is not None and frame.seq != last + 1:
                                    self.gaps += 1
                                last = frame.seq
                                self.frames += 1
                        except framebus.FrameTimeout:
                            continue
                        except framebus.Overrun:
                            self.gaps += 1
            except (framebus.PublisherGone, framebus.NotFound):
                if last is not None:
                    self.reconnects += 1
                last = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class EventNotes:
    """The node's live event notes (``{"type": "event", "event_type", "event"}``, from its
    listener), waitable: what the outbox journalled, as the API's WebSocket sees it."""

    def __init__(self, node: Node) -> None:
        self.notes: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.unsubscribe = node.add_listener(self._on)

    def _on(self, message: dict[str, Any]) -> None:
        if message.get("type") == "event":
            with self._cond:
                self.notes.append(message)
                self._cond.notify_all()

    def mark(self) -> int:
        """How many notes so far (pass it as ``after`` to wait for a later one)."""
        with self._cond:
            return len(self.notes)

    def open_ids(self) -> set[str]:
        """Events started and not ended so far."""
        with self._cond:
            started = {n["event"]["id"] for n in self.notes if n["event_type"] == "start"}
            return started - {n["event"]["id"] for n in self.notes if n["event_type"] == "end"}

    def wait(self, ok: Callable[[dict[str, Any]], bool], timeout: float, after: int = 0) -> dict[str, Any]:
        """The first note from index ``after`` on that ``ok`` accepts; AssertionError after ``timeout`` s."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in self.notes[after:]:
                    if ok(n):
                        return n
                left = end - time.monotonic()
                assert left > 0, f"no such event note within {timeout} s: {self.notes[-5:]}"
                self._cond.wait(min(left, 0.5))
