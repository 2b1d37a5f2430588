"""The fleet's names and records: buckets, keys, subjects, timings, and what an agent registers.

Layout in JetStream (every bucket replicated ``replicas`` times):

==========================  ======================  ==========================================
bucket / subject            key                     value
==========================  ======================  ==========================================
``camfleet_nodes``          node id                 :class:`NodeRecord` (JSON), kept when the node dies
``camfleet_alive``,         node id                 :class:`Heartbeat` (JSON), expires ``heartbeat_ttl_s``
``camfleet_alive_b``                                after the last beat (per-message TTL); every beat goes
                                                    to both, whose stream leaders the leader coordinator
                                                    keeps on different servers (see ``ALIVE_BUCKETS``)
``camfleet_leader``         ``leader``              :class:`LeaderRecord` (JSON), the coordinators' lease
``camfleet.status.<node>``  (core NATS subject)     the node's ``NodeStatus.to_json()``, every 2 s
``camfleet_desired``        node id                 :class:`DesiredNode` (JSON): the cameras the leader
                                                    placed on the node, written only by the leader
``camfleet_applied``        node id                 :class:`AppliedReport` (JSON): the revision the
                                                    agent runs, or why it refused a newer one
``CAMFLEET_EVENTS`` stream  ``camfleet.events.<node>``  one outbox event per message (JSON), message
                                                    id ``<node>:<journal seq>`` (deduplication)
``camfleet.ctl.<verb>``     (core NATS request)     the leader's control API (stage, apply, drain...)
==========================  ======================  ==========================================

Fencing: each camera of a :class:`DesiredNode` carries the ``token`` it was
assigned with (the ``revision`` of the desired state that first placed it on
that node). Tokens only grow; whatever a node writes for a camera (events,
segments) carries it, and the central store rejects a token older than the
camera's current assignment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

__all__ = [
    "ALIVE_BUCKET",
    "ALIVE_BUCKETS",
    "APPLIED_BUCKET",
    "CTL_PREFIX",
    "DESIRED_BUCKET",
    "EVENTS_STREAM",
    "EVENTS_SUBJECT_PREFIX",
    "AppliedReport",
    "DesiredCamera",
    "DesiredNode",
    "LEADER_BUCKET",
    "LEADER_KEY",
    "NODES_BUCKET",
    "FleetTiming",
    "Heartbeat",
    "LeaderRecord",
    "NodeRecord",
    "RecordError",
    "events_subject",
    "status_subject",
]

NODES_BUCKET = "camfleet_nodes"
ALIVE_BUCKET = "camfleet_alive"
ALIVE_BUCKETS = (ALIVE_BUCKET, "camfleet_alive_b")
"""The heartbeat buckets. Each beat is written to both; one acknowledgement renews the agent's
lease, and a node is counted lost only once its key expired in both. Losing the server that
leads one bucket's stream stops its writes for 5-7 s (an election), longer than the lease: with
the two leaders on different servers, losing any one server leaves a bucket that takes beats."""
LEADER_BUCKET = "camfleet_leader"
LEADER_KEY = "leader"
DESIRED_BUCKET = "camfleet_desired"
APPLIED_BUCKET = "camfleet_applied"
EVENTS_STREAM = "CAMFLEET_EVENTS"
EVENTS_SUBJECT_PREFIX = "camfleet.events"
CTL_PREFIX = "camfleet.ctl"
STATUS_PREFIX = "camfleet.status"
_T = TypeVar("_T")


def status_subject(node_id: str) -> str:
    """The subject a node's status snapshots are published on (``camfleet.status.*`` for all)."""
    return f"{STATUS_PREFIX}.{node_id}"


class RecordError(ValueError):
    """A record read from the store is not what camfleet writes (names the record and the problem)."""


@dataclass(frozen=True)
class FleetTiming:
    """Every time constant of the fleet's liveness and election, in seconds.

    An agent beats every ``heartbeat_s``; its beat expires ``heartbeat_ttl_s``
    after the last one; a coordinator counts it lost when no beat came in the
    ``grace_s`` after the expiry (see :mod:`camfleet.cluster.membership`).
    The leader's lease lasts ``lease_ttl_s``, is renewed every ``renew_s``,
    and the leader stops counting itself leader ``margin_s`` before the lease
    it last renewed could expire.

    The lease must outlast a JetStream stream-leader failover (a replicated
    bucket accepts no write for 5-7 s after the server leading it is killed,
    measured with nats-server 2.15 on loopback): shorter, and losing one NATS
    server would end the leadership. A lease of 8 s still hands over within
    10 s of a leader's death. Heartbeats need no such margin although an
    agent's fencing lease is only ``heartbeat_ttl_s`` - 1 s from its last
    acknowledged beat (:mod:`.fence`): every beat goes to two buckets led by
    different servers (:data:`ALIVE_BUCKETS`), so one lost server leaves one
    that takes beats, and a lost node's cameras run elsewhere about
    ``heartbeat_ttl_s + grace_s`` + 1-2 s after its last beat.
    """

    heartbeat_s: float = 1.0
    heartbeat_ttl_s: float = 4.0
    grace_s: float = 2.0
    status_s: float = 2.0
    lease_ttl_s: float = 8.0
    renew_s: float = 0.5
    margin_s: float = 0.5

    def __post_init__(self) -> None:
        if self.heartbeat_ttl_s < max(1.0, 2 * self.heartbeat_s):
            raise ValueError(f"heartbeat TTL {self.heartbeat_ttl_s} s: at least 1 s and two beats "
                             f"({self.heartbeat_s} s each)")
        if self.lease_ttl_s < 1.0 or not 0 < self.margin_s < self.lease_ttl_s - self.renew_s:
            raise ValueError(f"lease {self.lease_ttl_s} s, renewal every {self.renew_s} s, margin "
                             f"{self.margin_s} s: need lease >= 1 s and 0 < margin < lease - renewal")


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{what}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{what}: expected an object, got {type(data).__name__}")
    return data


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """The validator of a record class, built once per class.

    Building one costs milliseconds (a schema), which a coordinator reading a thousand
    heartbeats a second cannot pay per record (it did: 3 ms a beat).
    """
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def _parse(cls: type[_T], raw: bytes, what: str) -> _T:
    data = _load(raw, what)
    try:
        out: _T = _adapter(cls).validate_python(data, strict=False)
        return out
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
                             for e in exc.errors())
        raise RecordError(f"{what}: {problems}") from None


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class NodeRecord:
    """What an agent registers: who it is, what it has and what it can do.

    Sizes in bytes; ``capacity`` holds ``decode_pixels_per_s`` and
    ``inferences_per_s`` (see :mod:`camfleet.cluster.capacity`); ``gpus`` and
    ``vaapi`` are empty on a machine without them; ``started_at`` in seconds
    since the epoch; ``api_url`` is where the agent serves its media to the
    coordinators (``http://host:port``; None: an agent that serves none).
    """

    node_id: str
    hostname: str
    addresses: list[str]
    version: str
    labels: dict[str, str]
    cores: int
    memory_bytes: int
    shm_bytes: int
    gpus: list[dict[str, Any]] = field(default_factory=list)
    vaapi: list[dict[str, Any]] = field(default_factory=list)
    capacity: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    notes: list[str] = field(default_factory=list)
    api_url: str | None = None

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return _dump(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes, key: str = "?") -> NodeRecord:
        """Parse a stored record; raises :class:`RecordError` naming the key."""
        return _parse(cls, raw, f"{NODES_BUCKET}/{key}")


@dataclass(frozen=True)
class Heartbeat:
    """One beat: the node, a counter, the agent's start time; ``leaving`` on a clean stop."""

    node_id: str
    seq: int
    started_at: float
    leaving: bool = False

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return _dump(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes, key: str = "?") -> Heartbeat:
        """Parse a stored beat; raises :class:`RecordError` naming the key."""
        return _parse(cls, raw, f"{ALIVE_BUCKET}/{key}")


@dataclass(frozen=True)
class LeaderRecord:
    """The leader lease's value: the coordinator's id, host and pid, when it took the lease (epoch s).

    ``term`` is the revision of the create that won the lease; 0 in the create
    itself (whose own revision is the term), set in every renewal.
    """

    coordinator_id: str
    hostname: str
    pid: int
    since: float
    term: int = 0

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return _dump(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> LeaderRecord:
        """Parse the lease; raises :class:`RecordError`."""
        return _parse(cls, raw, f"{LEADER_BUCKET}/{LEADER_KEY}")


@dataclass(frozen=True)
class DesiredCamera:
    """One camera placed on a node: its settings and its fencing token.

    ``settings`` is the camera's entry exactly as under ``cameras.<name>`` in a
    node's YAML configuration (a plain mapping); ``token`` the revision of the
    desired state that placed the camera on this node (unchanged while it stays).
    """

    settings: dict[str, Any]
    token: int


@dataclass(frozen=True)
class DesiredNode:
    """What the leader wants one node to run: written to ``camfleet_desired/<node>``.

    ``revision`` grows with every write of any node's desired state (the
    fleet's placement generation); ``term`` is the leader's term that wrote it
    (an agent ignores a write from an older term than one it has seen);
    ``cameras`` maps camera name to :class:`DesiredCamera`; ``written_at`` in
    seconds since the epoch.
    """

    node_id: str
    revision: int
    term: int
    cameras: dict[str, DesiredCamera] = field(default_factory=dict)
    written_at: float = 0.0

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return _dump(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes, key: str = "?") -> DesiredNode:
        """Parse a stored desired state; raises :class:`RecordError` naming the key."""
        return _parse(cls, raw, f"{DESIRED_BUCKET}/{key}")


@dataclass(frozen=True)
class AppliedReport:
    """An agent's answer to its desired state: written to ``camfleet_applied/<node>``.

    ``revision``: the desired revision the node runs now (0: none yet);
    ``refused``: the newer revision it refused, with ``errors`` (human
    readable, naming the camera and the setting); ``fenced``: the node stopped
    its cameras because it could not renew its heartbeat; ``at`` epoch seconds.
    """

    node_id: str
    revision: int
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    fenced: bool = False
    cameras: list[str] = field(default_factory=list)
    at: float = 0.0

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return _dump(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes, key: str = "?") -> AppliedReport:
        """Parse a stored report; raises :class:`RecordError` naming the key."""
        return _parse(cls, raw, f"{APPLIED_BUCKET}/{key}")


def events_subject(node_id: str) -> str:
    """The subject a node's outbox events are published on (``camfleet.events.*`` for all)."""
    return f"{EVENTS_SUBJECT_PREFIX}.{node_id}"
