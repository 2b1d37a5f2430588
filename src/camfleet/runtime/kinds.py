"""The kinds of process a node runs, one class each: ingest, pipeline, recorder, detector.

A kind knows everything that differs between processes, so that the
supervisor, the reconciler, the status and the start-up checks dispatch on
the class and never on a name:

* **spec**: whether a camera runs it (:meth:`CameraKind.runs`) and what it is started with;
* **reconcile signature**: the part of the configuration whose change restarts it;
* **entry point**: what runs in the child process (:meth:`CameraKind.main`);
* **named counters**: which heartbeat counters it fills, as named metrics (:meth:`ProcessKind.metrics`);
* **ring sizes**: the shared memory its rings take (:meth:`CameraKind.rings`);
* **when it is hung**: :meth:`ProcessKind.kill_reason`.

The kind's :attr:`~ProcessKind.name` is only its serialised name (the
``ProcessStatus.kind`` the REST API shows, and process names ``cam1/pipeline``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from typing_extensions import override

from camfleet.config import Config, RuntimeSettings
from camfleet.detect.protocol import request_ring_bytes
from camfleet.framebus import PACKET_INDEX_SIZE, frame_ring_bytes, packet_ring_bytes

from . import heartbeat as hb
from .control import CameraStatus
from .control import ProcessKind as ProcessKindName
from .detect_use import detect_uses

if TYPE_CHECKING:
    from .children import ChildProcess, ChildSpec

ASSUMED_SOURCE_SIZE = (1920, 1080)
"""Frame size (pixels) assumed for a camera without ``detect.width/height`` whose stream size is unknown."""


def settings_of(value: object) -> object:
    """A configuration part as plain, comparable data (pydantic models dumped as JSON; None as is)."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else value


def frame_settings(config: Config, camera: str) -> object:
    """The frame size and rate of ``camera``'s pipeline (``detect`` without its live on/off switch)."""
    return config.camera(camera).detect.model_dump(mode="json", exclude={"enabled"})


class RingBytes(NamedTuple):
    """Shared memory one camera's rings take, in bytes."""

    frames: int = 0
    packets: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        """All of them, in bytes."""
        return self.frames + self.packets + self.requests


@dataclass
class Sample:
    """What the status part measured of one process: its counters, their rates (per s), running means."""

    counters: tuple[float, ...] = ()
    rates: Mapping[int, float] = field(default_factory=dict)
    means: Mapping[str, float] = field(default_factory=dict)

    def counter(self, index: int) -> float:
        """Counter ``index`` (0 when the process has not reported it)."""
        return self.counters[index] if index < len(self.counters) else 0.0

    def rate(self, index: int) -> float:
        """The per-second rate of counter ``index`` (0 until measured)."""
        return self.rates.get(index, 0.0)


class ProcessKind(ABC):
    """What every kind of supervised process tells the supervisor and the status part."""

    name: ClassVar[ProcessKindName]
    """The serialised kind (``ProcessStatus.kind``)."""
    stop_rank: ClassVar[int] = 0
    """Processes of a lower rank stop first (those that serve others stop last)."""
    rated: ClassVar[tuple[int, ...]] = ()
    """Counter indexes whose per-second rate the status part measures."""
    means: ClassVar[Mapping[str, tuple[int, int]]] = {}
    """Running means measured by the status part: name -> (numerator counter, denominator counter)."""

    @abstractmethod
    def metrics(self, sample: Sample) -> dict[str, float]:
        """The process's named metrics (``ProcessStatus.metrics``) from its counters."""

    def kill_reason(self, beat: hb.Beat, settings: RuntimeSettings, stuck_s: float | None) -> str | None:
        """Why a beating process counts as hung and must be killed, or None while it is fine."""
        if beat.age_s is not None and beat.age_s > settings.heartbeat_timeout:
            return f"unresponsive: no heartbeat for {beat.age_s:.1f} s"
        return None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"<{self.name} process kind>"


class CameraKind(ProcessKind):
    """A process the node runs per camera (started with a :class:`~camfleet.runtime.children.ChildSpec`)."""

    takes_updates: ClassVar[bool] = False
    """Its process receives new configurations while it runs (the pipeline's live settings)."""
    uses_detectors: ClassVar[bool] = False
    """Its process talks to detector processes (it is given their names and input sizes)."""

    @abstractmethod
    def runs(self, config: Config, camera: str) -> bool:
        """Whether an enabled ``camera`` runs a process of this kind under ``config``."""

    @abstractmethod
    def signature(self, config: Config, camera: str) -> object:
        """The part of ``config`` this kind's process of ``camera`` is started with (a change restarts it)."""

    @abstractmethod
    def main(self, spec: ChildSpec, child: ChildProcess) -> None:
        """The entry point: run the process's loop until ``child.stop`` is set."""

    def rings(self, config: Config, camera: str) -> RingBytes:
        """The shared memory the rings this process creates take, in bytes (at most, for a packet ring).

        A packet ring is sized from its stream's measured rate (:mod:`camfleet.ingest.packet_sizing`):
        the figure is the largest it may be.
        """
        return RingBytes()

    def add_to_camera(self, status: CameraStatus, sample: Sample) -> None:
        """Add what this process says about the camera as a whole to ``status``."""


class IngestKind(CameraKind):
    """Decodes the camera's detect stream once into its frame ring and packet ring."""

    name = "ingest"
    rated = (hb.FRAMES, hb.EXTRA, hb.ERRORS)

    @override
    def runs(self, config: Config, camera: str) -> bool:
        return True

    @override
    def signature(self, config: Config, camera: str) -> object:
        cam = config.camera(camera)
        return (settings_of(cam.detect_source), frame_settings(config, camera))

    @override
    def main(self, spec: ChildSpec, child: ChildProcess) -> None:
        from .children import run_ingest  # noqa: PLC0415 - children import this module's types

        run_ingest(spec, child)

    @override
    def rings(self, config: Config, camera: str) -> RingBytes:
        from camfleet.ingest.synthetic import SyntheticSpec  # noqa: PLC0415

        from .children import ingest_config  # noqa: PLC0415

        ingest = ingest_config(config, camera)  # what the ingest process runs with
        source = ASSUMED_SOURCE_SIZE
        if ingest.url.lower().startswith("synthetic://"):
            with contextlib.suppress(Exception):
                spec = SyntheticSpec.parse(ingest.url)
                source = (spec.width, spec.height)
        fmt = ingest.output.ring_format(*source)
        frames = frame_ring_bytes(fmt.width, fmt.height, ingest.output.pixel_format, ingest.ring_slots)
        return RingBytes(frames=frames, packets=packet_ring_bytes(ingest.packet_capacity, PACKET_INDEX_SIZE))

    @override
    def metrics(self, sample: Sample) -> dict[str, float]:
        # decoded: every frame of the stream; frames/fps: those published after the frame-rate limit
        return {"frames": sample.counter(hb.FRAMES), "fps": sample.rate(hb.FRAMES),
                "packets": sample.counter(hb.PACKETS), "decoded": sample.counter(hb.EXTRA),
                "decode_fps": sample.rate(hb.EXTRA),
                # frames decoded from damaged data plus packets the decoder refused
                "corrupt": sample.counter(hb.ERRORS), "corrupt_fps": sample.rate(hb.ERRORS)}

    @override
    def add_to_camera(self, status: CameraStatus, sample: Sample) -> None:
        status.decode_fps = sample.rate(hb.EXTRA)
        status.corrupt_fps = sample.rate(hb.ERRORS)


class PipelineKind(CameraKind):
    """Runs the camera's elements on its frames; sends events and activity to the node."""

    name = "pipeline"
    takes_updates = True
    uses_detectors = True
    rated = (hb.FRAMES, hb.SKIPPED, hb.DET_REQUESTS)
    means: ClassVar[Mapping[str, tuple[int, int]]] = {"inference_ms": (hb.INFER_MS, hb.DET_REQUESTS)}

    @override
    def runs(self, config: Config, camera: str) -> bool:
        return True

    @override
    def signature(self, config: Config, camera: str) -> object:
        names = [e.name for e in config.pipeline_of(camera)]
        used = sorted(detect_uses(config, camera))
        detectors = {d: (settings_of(config.detectors.get(d)), settings_of(config.models.get(m)))
                     for d, m in used}
        return (names, frame_settings(config, camera), used, detectors)

    @override
    def main(self, spec: ChildSpec, child: ChildProcess) -> None:
        from .children import run_pipeline  # noqa: PLC0415

        run_pipeline(spec, child)

    @override
    def rings(self, config: Config, camera: str) -> RingBytes:
        requests = 0
        for _detector, model_id in dict(detect_uses(config, camera)).items():  # one ring per detector
            model = config.models.get(model_id)
            if model is not None:
                requests += request_ring_bytes((model.input.width, model.input.height))
        return RingBytes(requests=requests)

    @override
    def metrics(self, sample: Sample) -> dict[str, float]:
        return {"frames": sample.counter(hb.FRAMES), "fps": sample.rate(hb.FRAMES),
                "skipped_fps": sample.rate(hb.SKIPPED), "detector_rps": sample.rate(hb.DET_REQUESTS),
                "inference_ms": sample.means.get("inference_ms", 0.0), "lag_ms": sample.counter(hb.LAG_MS),
                "errors": sample.counter(hb.ERRORS), "updates": sample.counter(hb.EXTRA)}

    @override
    def add_to_camera(self, status: CameraStatus, sample: Sample) -> None:
        status.processed_fps = sample.rate(hb.FRAMES)
        status.skipped_fps = sample.rate(hb.SKIPPED)
        status.detector_rps = sample.rate(hb.DET_REQUESTS)
        status.inference_ms = sample.means.get("inference_ms", 0.0)


class RecorderKind(CameraKind):
    """Writes the camera's packets into recording segments."""

    name = "recorder"
    rated = (hb.FRAMES,)

    @override
    def runs(self, config: Config, camera: str) -> bool:
        return config.camera(camera).record.enabled

    @override
    def signature(self, config: Config, camera: str) -> object:
        # retention settings are read by the node's housekeeping, not the recorder
        cam = config.camera(camera)
        src = cam.source("record") or cam.detect_source
        return (settings_of(src), cam.record.enabled, cam.record.segment_seconds, cam.record.transcode)

    @override
    def main(self, spec: ChildSpec, child: ChildProcess) -> None:
        from .children import run_recorder  # noqa: PLC0415

        run_recorder(spec, child)

    @override
    def metrics(self, sample: Sample) -> dict[str, float]:
        return {"frames": sample.counter(hb.FRAMES), "packets": sample.counter(hb.FRAMES),
                "segments": sample.counter(hb.EXTRA)}


class DetectorKind(ProcessKind):
    """A shared detector process: serves one model to every camera that names its detector.

    Its counters (read from its heartbeat file, :mod:`camfleet.detect.service`)
    are :data:`BATCHES`, :data:`IMAGES`, :data:`INFER_MS` (total) and :data:`QUEUED`.
    It creates no ring: the request rings it reads are created, and counted,
    by the pipelines that send them (:meth:`PipelineKind.rings`).
    """

    name = "detector"
    stop_rank = 1  # pipelines talk to detectors until they stop
    BATCHES, IMAGES, INFER_MS, QUEUED = range(4)

    def context(self) -> SpawnContext:
        """Where its processes start without a node: a fresh interpreter (never a fork of a threaded process).

        A node's detectors fork from its camera processes' forkserver (single-threaded) instead.
        """
        return mp.get_context("spawn")

    def signature(self, config: Config, detector: str, model_id: str) -> object:
        """The configuration detector ``detector`` serving ``model_id`` is started with."""
        return (settings_of(config.detectors[detector]), model_id, settings_of(config.models[model_id]))

    @override
    def metrics(self, sample: Sample) -> dict[str, float]:
        batches, images = sample.counter(self.BATCHES), sample.counter(self.IMAGES)
        return {"batches": batches, "images": images, "queued": sample.counter(self.QUEUED),
                "mean_batch": round(images / batches, 2) if batches else 0.0,
                "inference_ms": round(sample.counter(self.INFER_MS) / batches, 2) if batches else 0.0}

    @override
    def kill_reason(self, beat: hb.Beat, settings: RuntimeSettings, stuck_s: float | None) -> str | None:
        stuck = stuck_s if stuck_s is not None else settings.heartbeat_timeout
        if beat.busy_s is not None and beat.busy_s > stuck:
            return f"stuck in one inference for more than {stuck:g} s"
        if beat.age_s is not None and beat.age_s > max(5.0, 2 * stuck):
            return f"stopped beating ({beat.age_s:.1f} s without a heartbeat)"
        return None


INGEST = IngestKind()
PIPELINE = PipelineKind()
RECORDER = RecorderKind()
DETECTOR = DetectorKind()
CAMERA_KINDS: tuple[CameraKind, ...] = (INGEST, PIPELINE, RECORDER)
"""The per-camera kinds, in start order."""


def camera_kinds(config: Config, camera: str) -> list[CameraKind]:
    """The processes ``camera`` runs under ``config`` (none when it is disabled)."""
    if not config.camera(camera).enabled:
        return []
    return [kind for kind in CAMERA_KINDS if kind.runs(config, camera)]


def camera_rings(config: Config, camera: str) -> RingBytes:
    """The shared memory all of ``camera``'s rings take (whatever its processes create), in bytes."""
    parts = [kind.rings(config, camera) for kind in CAMERA_KINDS if kind.runs(config, camera)]
    return RingBytes(*(sum(column) for column in zip(*parts, strict=True)))
