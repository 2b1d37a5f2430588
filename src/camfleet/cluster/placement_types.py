"""The placement scheduler's typed inputs and outputs: plain frozen dataclasses, no I/O.

Units used throughout: decode capacity and demand in **pixels per second** (width x height x
fps of the decoded stream), detection capacity and demand in **inferences per second**,
hardware as counts of exclusive units per kind (``{"gpu": 1, "nvdec": 4}``), times in
**seconds** on whatever clock the caller passes as ``now`` (the same clock every pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

#: Codecs a node decodes when its registration says nothing else (FFmpeg's software decoders).
DEFAULT_CODECS: frozenset[str] = frozenset({"h264", "h265", "mjpeg", "mpeg4"})


class NodeState(StrEnum):
    """A node's scheduling state.

    ``schedulable`` takes new cameras; ``cordoned`` keeps its cameras but takes no new ones;
    ``draining`` takes none and gives its cameras away a batch per pass; ``lost`` (heartbeat
    gone for TTL + grace) runs nothing: its cameras are placed again elsewhere.
    """

    SCHEDULABLE = "schedulable"
    CORDONED = "cordoned"
    DRAINING = "draining"
    LOST = "lost"


class Strategy(StrEnum):
    """How a feasible node is chosen: ``binpack`` the fullest that still fits, ``spread`` the emptiest."""

    BINPACK = "binpack"
    SPREAD = "spread"


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: must be a non-empty string, got {value!r}")


def _check_amount(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{what}: must be a finite number ≥ 0, got {value!r}")


def _check_counts(what: str, counts: Mapping[str, int], minimum: int) -> None:
    for kind, n in counts.items():
        _check_name(f"{what} kind", kind)
        if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
            raise ValueError(f"{what}[{kind!r}]: must be an integer ≥ {minimum}, got {n!r}")


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: object, what: str) -> _E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value in {m.value for m in kind}:
        return kind(value)
    raise ValueError(f"{what}: must be one of {', '.join(m.value for m in kind)}, got {value!r}")


def _check_labels(what: str, labels: Mapping[str, str]) -> None:
    for k, v in labels.items():
        _check_name(f"{what} key", k)
        if not isinstance(v, str):
            raise ValueError(f"{what}[{k!r}]: must be a string, got {v!r}")


@dataclass(frozen=True, slots=True)
class Node:
    """A machine that can run cameras, as its agent registered it.

    ``decode_pps``: decode capacity in pixels/s; ``infer_ps``: detector capacity in
    inferences/s (both measured by the agent's self-benchmark). ``hardware``: exclusive units
    per kind (GPUs, hardware decoder sessions). ``codecs``: codecs it can decode.
    """

    id: str
    decode_pps: float
    infer_ps: float
    labels: Mapping[str, str] = field(default_factory=dict)
    hardware: Mapping[str, int] = field(default_factory=dict)
    codecs: frozenset[str] = DEFAULT_CODECS
    state: NodeState = NodeState.SCHEDULABLE

    def __post_init__(self) -> None:
        _check_name("node id", self.id)
        _check_amount(f"node {self.id}: decode_pps", self.decode_pps)
        _check_amount(f"node {self.id}: infer_ps", self.infer_ps)
        _check_labels(f"node {self.id}: labels", self.labels)
        _check_counts(f"node {self.id}: hardware", self.hardware, 0)
        object.__setattr__(self, "state", _enum(NodeState, self.state, f"node {self.id}: state"))


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera to place and what it costs a node.

    ``decode_pps``: pixels/s it decodes (width x height x fps of the decoded stream);
    ``infer_ps``: inferences/s (detect fps x detection stages of its pipeline). ``selector``:
    labels a node must carry; ``hardware``: exclusive units it needs (``{"gpu": 1}``);
    ``group``: anti-affinity group (cameras covering one area land on different nodes where
    possible); ``pin``: the only node it may run on.
    """

    id: str
    decode_pps: float
    infer_ps: float
    codec: str = "h264"
    selector: Mapping[str, str] = field(default_factory=dict)
    hardware: Mapping[str, int] = field(default_factory=dict)
    group: str | None = None
    pin: str | None = None
    #: Canonical text of (selector, hardware, codec, pin): cameras with equal keys suit the same
    #: nodes. A string because it caches its hash: the scheduler looks it up once per camera.
    feasibility: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name("camera id", self.id)
        _check_amount(f"camera {self.id}: decode_pps", self.decode_pps)
        _check_amount(f"camera {self.id}: infer_ps", self.infer_ps)
        _check_name(f"camera {self.id}: codec", self.codec)
        _check_labels(f"camera {self.id}: selector", self.selector)
        _check_counts(f"camera {self.id}: hardware", self.hardware, 1)
        if self.group is not None:
            _check_name(f"camera {self.id}: group", self.group)
        if self.pin is not None:
            _check_name(f"camera {self.id}: pin", self.pin)
        key = (sorted(self.selector.items()), sorted(self.hardware.items()), self.codec, self.pin)
        object.__setattr__(self, "feasibility", repr(key))

    @classmethod
    def from_stream(cls, camera_id: str, *, width: int, height: int, fps: float, detect_fps: float,
                    stages: int = 1, **kwargs: object) -> Camera:
        """A camera whose demand follows from its stream.

        ``width x height x fps`` pixels/s decoded and ``detect_fps x stages`` inferences/s
        (``stages``: detection models its pipeline runs per analysed frame). Other fields pass
        through ``kwargs``.
        """
        return cls(camera_id, float(width) * float(height) * float(fps), float(detect_fps) * stages,
                   **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a camera runs (``node`` None: nowhere) and the assignment's revision.

    The revision grows by one on every change of ``node`` (including to and from None), so it
    serves as the fencing token an agent attaches to what the camera writes.
    """

    camera: str
    node: str | None
    revision: int

    def __post_init__(self) -> None:
        _check_name("assignment camera", self.camera)
        if self.node is not None:
            _check_name(f"assignment {self.camera}: node", self.node)
        if isinstance(self.revision, bool) or not isinstance(self.revision, int) or self.revision < 0:
            raise ValueError(f"assignment {self.camera}: revision must be an integer ≥ 0, "
                             f"got {self.revision!r}")


@dataclass(frozen=True, slots=True)
class PlacementSettings:
    """Scheduler knobs.

    ``incumbency_bonus`` and ``imbalance_threshold`` are fractions of a node's capacity
    (utilisation = the larger of decode and inference used / capacity). Rebalancing (spread
    only) starts when the most and least loaded schedulable nodes differ by more than
    ``imbalance_threshold`` and moves at most ``max_moves`` cameras per pass, each only if it
    lowers the gap by more than ``incumbency_bonus``; moves that spread an anti-affinity group
    again (both strategies) come out of the same ``max_moves``. A draining node gives away at most
    ``drain_batch`` cameras per pass. A camera whose node is lost is placed again at once the
    first time; the k-th time within ``reschedule_window_s`` waits
    ``backoff_base_s x 2^(k-2)`` (at most ``backoff_max_s``) after the previous one, and after
    ``reschedule_cap`` reschedules in the window it waits until the oldest leaves the window.
    """

    strategy: Strategy = Strategy.SPREAD
    incumbency_bonus: float = 0.10
    imbalance_threshold: float = 0.25
    max_moves: int = 4
    drain_batch: int = 4
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    reschedule_window_s: float = 600.0
    reschedule_cap: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", _enum(Strategy, self.strategy, "placement strategy"))
        for name in ("incumbency_bonus", "imbalance_threshold", "backoff_base_s", "backoff_max_s"):
            _check_amount(f"placement {name}", getattr(self, name))
        if not (isinstance(self.reschedule_window_s, (int, float)) and self.reschedule_window_s > 0):
            raise ValueError(f"placement reschedule_window_s: must be > 0, got {self.reschedule_window_s!r}")
        for name, minimum in (("max_moves", 0), ("drain_batch", 1), ("reschedule_cap", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"placement {name}: must be an integer ≥ {minimum}, got {v!r}")


@dataclass(frozen=True, slots=True)
class CameraHistory:
    """What the scheduler remembers about one camera between passes.

    ``reschedules``: times it was placed again after losing its node, within the window;
    ``failed_on``: (node, time) pairs of nodes that lost it within the window (avoided);
    ``hold_until``: when a held (backing-off) camera may be placed again.
    """

    reschedules: tuple[float, ...] = ()
    failed_on: tuple[tuple[str, float], ...] = ()
    hold_until: float | None = None


@dataclass(frozen=True, slots=True)
class History:
    """State carried from one pass to the next (give each pass the previous plan's ``history``).

    ``cameras``: per-camera reschedule history; ``lost_at``: when each node was last seen
    lost, within the window (such nodes get new work only when nothing else fits and are never
    rebalancing targets, so a flapping node attracts no cameras).
    """

    cameras: Mapping[str, CameraHistory] = field(default_factory=dict)
    lost_at: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Move:
    """One change of a camera's assignment.

    ``source`` → ``target`` (None: not running), the new ``revision`` and why (``"new camera"``,
    ``"node n3 lost"``, ``"drain n3"``, ...).
    """

    camera: str
    source: str | None
    target: str | None
    revision: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A camera that runs nowhere after this pass.

    ``reason``: precisely why; ``retry_at``: when a held camera may be tried again (None: as soon
    as something changes).
    """

    camera: str
    reason: str
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """A node's load after the pass.

    Pixels/s decoded, inferences/s, camera count, utilisation (the larger of the two
    used/capacity fractions).
    """

    node: str
    decode_pps: float
    infer_ps: float
    cameras: int
    utilisation: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of one scheduling pass.

    ``assignments``: every camera given → its Assignment (node None when unplaced);
    ``moves``: every change with its new revision (what to write to the nodes' keys);
    ``unplaced``: camera → reason; ``warnings``: e.g. anti-affinity that could not be kept;
    ``history``: to pass to the next pass; ``retry_at``: earliest time a held camera may be
    placed (schedule a pass then); ``drained``: draining nodes now empty; ``loads``: per node.
    """

    assignments: Mapping[str, Assignment]
    moves: tuple[Move, ...]
    unplaced: Mapping[str, Unplaced]
    warnings: tuple[str, ...]
    history: History
    retry_at: float | None
    drained: tuple[str, ...]
    loads: Mapping[str, NodeLoad]
