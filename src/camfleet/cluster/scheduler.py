"""From the fleet's state to each node's desired state: the leader's pure decisions (no I/O).

* :func:`placement_nodes`: the members (:mod:`.membership`) and the operators'
  flags as the placement scheduler's nodes: an alive node is schedulable,
  cordoned or draining; an expired one (heartbeat gone, within the grace) keeps
  its cameras but takes no new ones; a lost one, or one never seen beating, runs
  nothing.
* :func:`current_assignments`: where the desired states say each camera runs
  (a camera found on two nodes, which the ordering below never leaves, counts
  where its token is highest).
* :func:`desired_writes`: the new camera map of each node whose map changes, in
  the order that never runs a camera on two nodes: ``phase`` 1 rewrites the keys
  of *gone* nodes (lost, unknown) without the cameras that leave them; phase 2
  writes everything else. A camera that leaves a *live* node is removed there
  and waits *in transit* until that node reports (``camfleet_applied``) a
  revision without it, or is gone; only then is it added to its new node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .membership import Member
from .placement_types import Assignment, Node, NodeState
from .registry import DesiredCamera, DesiredNode

__all__ = ["NodeWrite", "Transit", "current_assignments", "desired_writes", "gone_nodes", "placement_nodes"]


@dataclass(frozen=True)
class Transit:
    """A camera removed from live node ``source`` by the write of ``revision``, bound for ``target``."""

    source: str
    revision: int
    target: str | None


@dataclass(frozen=True)
class NodeWrite:
    """A node's new desired camera map: name → settings; ``tokens`` of the cameras that stay (others: new).

    ``phase`` 1: a gone node's key (written first); 2: the rest. ``added``/``removed``: camera names.
    """

    node: str
    settings: dict[str, dict[str, Any]]
    tokens: dict[str, int]
    phase: int
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def desired(self, revision: int, term: int, at: float) -> DesiredNode:
        """The record to write with ``revision`` (the token of every camera added by this write)."""
        return DesiredNode(
            self.node,
            revision,
            term,
            {c: DesiredCamera(s, self.tokens.get(c, revision)) for c, s in self.settings.items()},
            at,
        )


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if out >= 0 and out != float("inf") else 0.0


def placement_nodes(members: Mapping[str, Member], flags: Mapping[str, tuple[bool, bool]]) -> list[Node]:
    """Each member as a placement node, its state from liveness and the (cordoned, draining) ``flags``."""
    out: list[Node] = []
    for node_id, m in sorted(members.items()):
        record = m.record
        cap = record.capacity if record is not None else {}
        hardware: dict[str, int] = {}
        if record is not None and record.gpus:
            hardware["gpu"] = len(record.gpus)
        if record is not None and record.vaapi:
            hardware["vaapi"] = len(record.vaapi)
        cordoned, draining = flags.get(node_id, (False, False))
        if m.state == "alive" and record is not None:
            state = (
                NodeState.DRAINING if draining else NodeState.CORDONED if cordoned else NodeState.SCHEDULABLE
            )
        elif m.state == "expired" or (m.state == "alive" and record is None):
            state = NodeState.CORDONED  # keeps what it has until it is lost; nothing new meanwhile
        else:
            state = NodeState.LOST
        try:
            out.append(
                Node(
                    node_id,
                    _float(cap.get("decode_pixels_per_s")),
                    _float(cap.get("inferences_per_s")),
                    labels=dict(record.labels) if record is not None else {},
                    hardware=hardware,
                    state=state,
                )
            )
        except ValueError:  # a label the scheduler refuses (agents check theirs): the node takes nothing
            out.append(
                Node(
                    node_id, 0.0, 0.0, state=NodeState.LOST if state is NodeState.LOST else NodeState.CORDONED
                )
            )
    return out


def gone_nodes(members: Mapping[str, Member], desired: Iterable[str]) -> set[str]:
    """Nodes whose cameras may start elsewhere at once: lost, never seen beating, or not registered at all."""
    gone = {
        n
        for n, m in members.items()
        if m.state == "lost" or (m.state == "registered" and m.last_beat is None)
    }
    return gone | {n for n in desired if n not in members}


def current_assignments(
    desired: Mapping[str, DesiredNode], transit: Mapping[str, Transit]
) -> dict[str, Assignment]:
    """Camera → Assignment(node, token) from the desired states, cameras in transit at their target."""
    out: dict[str, Assignment] = {}
    for node_id in sorted(desired):
        for cam, dc in desired[node_id].cameras.items():
            prev = out.get(cam)
            if prev is None or dc.token > prev.revision:
                out[cam] = Assignment(cam, node_id, dc.token)
    for cam, t in transit.items():
        if cam not in out:
            out[cam] = Assignment(cam, t.target, t.revision)
    return out


def desired_writes(
    desired: Mapping[str, DesiredNode],
    targets: Mapping[str, str | None],
    settings: Mapping[str, dict[str, Any]],
    gone: set[str],
    transit: Mapping[str, Transit],
) -> tuple[list[NodeWrite], dict[str, tuple[str, str | None]]]:
    """The writes that bring the desired states to ``targets`` (camera → node or None) safely.

    ``settings``: every fleet camera's settings (a camera not in it is removed);
    ``gone``: nodes whose cameras can start elsewhere at once; ``transit``: cameras
    waiting for their live source to confirm. Returns the writes (phase 1 first)
    and the cameras that now leave a live node: camera → (source, target).
    """
    holder: dict[str, tuple[str, int]] = {}
    for node_id in sorted(desired):
        for cam, dc in desired[node_id].cameras.items():
            if cam not in holder or dc.token > holder[cam][1]:
                holder[cam] = (node_id, dc.token)
    leaving: dict[str, tuple[str, str | None]] = {}
    new_maps: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in desired}
    tokens: dict[str, dict[str, int]] = {n: {} for n in desired}
    for cam, target in sorted(targets.items()):
        if cam not in settings:
            continue
        held = holder.get(cam)
        if held is not None and held[0] == target:
            new_maps[target][cam] = settings[cam]
            tokens[target][cam] = held[1]
            continue
        if held is not None and held[0] not in gone:
            leaving[cam] = (held[0], target)  # removed from its live node now; added once it confirms
            continue
        if cam in transit or target is None:
            continue
        new_maps.setdefault(target, {})[cam] = settings[cam]
        tokens.setdefault(target, {})
    writes: list[NodeWrite] = []
    for node_id in sorted(new_maps):
        old = desired.get(node_id)
        before = {c: dc.settings for c, dc in old.cameras.items()} if old is not None else None
        after = new_maps[node_id]
        stay_tokens = tokens[node_id]
        if (
            before is not None
            and before == after
            and old is not None
            and all(old.cameras[c].token == stay_tokens.get(c) for c in after)
        ):
            continue
        added = tuple(sorted(set(after) - set(before or {})))
        removed = tuple(sorted(set(before or {}) - set(after)))
        phase = 1 if node_id in gone and not added else 2
        writes.append(NodeWrite(node_id, after, stay_tokens, phase, added, removed))
    writes.sort(key=lambda w: (w.phase, w.node))
    return writes, leaving
