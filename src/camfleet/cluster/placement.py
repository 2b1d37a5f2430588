"""The fleet's camera placement: a pure, deterministic scheduler (no I/O, no NATS).

``plan(nodes, cameras, current, settings, history, now)`` takes the registered nodes, the
configured cameras and the current assignments and returns a :class:`Plan`: where every
camera runs, each change with its new revision (the fencing token), the cameras that cannot
run and precisely why, and the history to give the next pass. Same input, same plan.

Rules, in the order a pass applies them:

1. *Incumbents stay.* A camera keeps its node while the node is schedulable, cordoned or
   draining and still suits it (labels, codec, hardware, pin); a node over capacity (it
   shrank, or demand grew) gives away its most recently changed cameras until it fits.
2. *Lost nodes.* A lost (or unknown) node's cameras are placed again at once, avoiding nodes
   that lost them within the window; a camera that keeps losing its node backs off
   exponentially and is capped per window (held, not running, with ``retry_at``), so a
   flapping node causes no storm. A node lost within the window gets new work only when no
   other node fits and is never a rebalancing target.
3. *Drain.* A draining node gives away at most ``drain_batch`` cameras per pass (lowest ids
   first); one that fits nowhere else stays there, with a warning.
4. *Placement.* Cameras to place go largest first. Feasibility first (state schedulable,
   selector labels, codec, hardware, pin, capacity left), then the score: spread picks the
   least utilised node, binpack the most utilised that still fits. Anti-affinity is soft: a
   camera of a group goes to a node without the group when any fits; when none does it is
   placed anyway next to its group, with a warning — a camera not running covers nothing,
   which is worse than two cameras of one area on one node.
5. *Anti-affinity repair.* A camera placed next to its group (nothing else fitted then) moves
   to a node without the group once one fits (a node joined, load left), within the same
   ``max_moves`` budget per pass as rebalancing.
6. *Rebalance* (spread only: binpack wants the imbalance). When the most and least utilised
   schedulable nodes differ by more than ``imbalance_threshold``, move at most ``max_moves``
   cameras per pass (less any repairs) from the most utilised, each only if it narrows the gap
   by more than ``incumbency_bonus`` and breaks no anti-affinity.

Every change of a camera's node (to or from nowhere included) adds one to its revision.
Revisions of removed cameras must be kept by the caller if ids can come back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

from camfleet.cluster.placement_history import HistoryBook
from camfleet.cluster.placement_pool import ZERO, Pool
from camfleet.cluster.placement_types import (
    DEFAULT_CODECS,
    Assignment,
    Camera,
    CameraHistory,
    History,
    Move,
    Node,
    NodeLoad,
    NodeState,
    PlacementSettings,
    Plan,
    Strategy,
    Unplaced,
)

__all__ = [
    "DEFAULT_CODECS",
    "Assignment",
    "Camera",
    "CameraHistory",
    "History",
    "Move",
    "Node",
    "NodeLoad",
    "NodeState",
    "Plan",
    "PlacementSettings",
    "Strategy",
    "Unplaced",
    "plan",
]

_NEW, _LOST, _EVICTED, _DRAIN = range(4)


def _unique(kind: str, ids: Iterable[str]) -> None:
    dups = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dups:
        raise ValueError(f"duplicate {kind} id(s): {', '.join(dups[:10])}")


class _Pass:
    """One scheduling pass (the working state of :func:`plan`)."""

    def __init__(self, nodes: list[Node], cameras: dict[str, Camera], current: Mapping[str, Assignment],
                 settings: PlacementSettings, history: History, now: float) -> None:
        self.s = settings
        self.cameras = cameras
        self.current = current
        self.book = HistoryBook(history, settings, now)
        self.now = now
        index = {n.id: i for i, n in enumerate(nodes)}
        occupied = {a.node for a in current.values()}
        for n in nodes:
            if n.state is NodeState.LOST:
                self.book.node_lost(n.id, fresh=n.id in occupied)
        recent = {index[n] for n in self.book.lost_at if n in index
                  and nodes[index[n]].state is NodeState.SCHEDULABLE}
        self.pool = Pool(nodes, settings.strategy, recent)
        self.where: dict[str, int | None] = {}
        self.moves: dict[str, tuple[str | None, str | None, str]] = {}  # camera → (from, to, reason)
        self.unplaced: dict[str, Unplaced] = {}
        self.warnings: list[str] = []

    # -- helpers --------------------------------------------------------------------------

    def _node_id(self, i: int | None) -> str | None:
        return None if i is None else self.pool.nodes[i].id

    def _change(self, cam: str, source: str | None, target: str | None, reason: str) -> None:
        first = self.moves.get(cam)
        self.moves[cam] = (first[0] if first else source, target, reason)

    def _unplace(self, cam: str, source: str | None, reason: str, retry_at: float | None = None) -> None:
        self.where[cam] = None
        self.unplaced[cam] = Unplaced(cam, reason, retry_at)
        if source is not None or cam in self.moves:
            self._change(cam, source, None, reason)

    # -- the pass -------------------------------------------------------------------------

    def run(self) -> Plan:
        to_place = self._keep_incumbents()
        to_place.extend(self._drain_batches())
        to_place.sort(key=lambda t: (-t[0].decode_pps, -t[0].infer_ps, t[0].id))
        for cam, kind, source, reason in to_place:
            self._place(cam, kind, source, reason)
        budget = self.s.max_moves - self._repair_anti_affinity(self.s.max_moves)
        if self.s.strategy is Strategy.SPREAD and budget > 0:
            self._rebalance(budget)
        return self._result()

    def _keep_incumbents(self) -> list[tuple[Camera, int, int | None, str]]:
        pool, book = self.pool, self.book
        out: list[tuple[Camera, int, int | None, str]] = []
        for cid, cam in self.cameras.items():  # in id order
            a = self.current.get(cid)
            if a is None or a.node is None:
                held = book.held(cid)
                if held is not None:
                    prev = self.unplaced_reason(cid)
                    self._unplace(cid, None, prev, held)
                    continue
                was_held = book.cams.get(cid) is not None and book.cams[cid].hold_until is not None
                out.append((cam, _LOST if was_held else _NEW, None, "new camera" if a is None else "placed"))
                continue
            i = pool.index.get(a.node)
            state = None if i is None else pool.nodes[i].state
            if i is None or state is NodeState.LOST:
                book.failed(cid, a.node)
                reason = f"node {a.node} lost" if i is not None else f"node {a.node} is not registered"
                if cam.pin is not None:
                    out.append((cam, _NEW, None, reason))  # pinned: no back-off; fails with why
                    self._change(cid, a.node, None, reason)
                    continue
                until, why = book.hold(cid)
                if until is not None:
                    book.set_hold(cid, until)
                    self._unplace(cid, a.node, f"{reason}; {why}; next try at {until:g}", until)
                    continue
                self._change(cid, a.node, None, reason)
                out.append((cam, _LOST, None, reason))
                continue
            misfit = pool.misfit(cam, i)
            if misfit is not None:
                self._change(cid, a.node, None, f"no longer suits {a.node}: {misfit}")
                out.append((cam, _EVICTED, None, f"no longer suits {a.node}: {misfit}"))
                continue
            pool.load(i, cam)  # classes are built after this loop, so no heap upkeep yet
            self.where[cid] = i
        for i in range(len(pool.nodes)):
            if pool.over(i):
                # The most recently changed cameras go first: the long-running ones stay.
                order = sorted(pool.cams[i].values(),
                               key=lambda c: (-self.current[c.id].revision, c.id), reverse=False)
                for cam in order:
                    if not pool.over(i):
                        break
                    pool.remove(i, cam)
                    reason = f"{pool.nodes[i].id} over capacity"
                    self._change(cam.id, pool.nodes[i].id, None, reason)
                    self.where[cam.id] = None
                    out.append((cam, _EVICTED, None, reason))
        return out

    def unplaced_reason(self, cid: str) -> str:
        """The reason a held camera waits (it keeps the same words across passes)."""
        h = self.book.cams.get(cid)
        until = h.hold_until if h else None
        return f"held by reschedule back-off; next try at {until:g}" if until is not None else "held"

    def _drain_batches(self) -> list[tuple[Camera, int, int | None, str]]:
        pool = self.pool
        out: list[tuple[Camera, int, int | None, str]] = []
        for i, node in enumerate(pool.nodes):
            if node.state is NodeState.DRAINING:
                for cid in sorted(pool.cams[i])[: self.s.drain_batch]:
                    out.append((pool.cams[i][cid], _DRAIN, i, f"drain {node.id}"))
        return out

    def _place(self, cam: Camera, kind: int, source: int | None, reason: str) -> None:
        pool = self.pool
        cls = pool.feasibility(cam)
        src_id = self._node_id(source)
        target: int | None = None
        pen = ZERO
        if cls.reason is None:
            target, pen = pool.pick(cam, cls, avoid=self.book.avoid(cam.id))
        if target is None:
            why = cls.reason if cls.reason is not None else pool.capacity_reason(cls, cam)
            if kind == _DRAIN:
                self.warnings.append(f"drain {src_id}: {cam.id} stays, it fits nowhere else: {why}")
                return
            self._unplace(cam.id, None, why)
            if cam.id in self.moves:
                self._change(cam.id, None, None, f"{reason}; unplaced: {why}")
            return
        if source is not None:
            pool.remove(source, cam)
        pool.add(target, cam)
        self.where[cam.id] = target
        self.unplaced.pop(cam.id, None)
        tid = pool.nodes[target].id
        self._change(cam.id, src_id, tid, reason)
        if kind == _LOST:
            self.book.rescheduled(cam.id)
        if pen[1]:
            self.warnings.append(f"anti-affinity group {cam.group}: {cam.id} placed on {tid} with "
                                 f"{pen[1]} other camera(s) of its group; no other node fits")
        if pen[0]:
            self.warnings.append(f"{cam.id} placed back on {tid}, which lost it recently; no other node fits")

    def _repair_anti_affinity(self, budget: int) -> int:
        """Move cameras that share a node with their group where a node without it now fits.

        Placement breaks a group only when nothing else fits; a node that joins (or frees up)
        later lets the group spread again, ``budget`` cameras per pass. Returns the moves made.
        """
        pool, done = self.pool, 0
        crowded = sorted((group, i) for (group, i), n in pool.groups.items()
                         if n > 1 and pool.nodes[i].state is not NodeState.LOST)
        for group, i in crowded:
            members = sorted(c for c, cam in pool.cams[i].items() if cam.group == group)
            for cid in members[1:]:  # the first (lowest id) stays
                if done >= budget:
                    return done
                cam = pool.cams[i][cid]
                if cid in self.moves or cam.pin is not None:
                    continue
                cls = pool.feasibility(cam)
                if cls.reason is not None:
                    continue
                dst, _ = pool.pick(cam, cls, avoid=self.book.avoid(cid), exclude=i, strict=True)
                if dst is None:
                    continue
                pool.remove(i, cam)
                pool.add(dst, cam)
                self.where[cid] = dst
                self._change(cid, pool.nodes[i].id, pool.nodes[dst].id,
                             f"anti-affinity: group {group} had {len(members)} cameras on {pool.nodes[i].id}")
                done += 1
        return done

    def _rebalance(self, budget: int) -> None:
        pool, s = self.pool, self.s
        eligible = [i for i in pool.schedulable if i not in pool.recently_lost
                    and (pool.dec_cap[i] > 0 or pool.inf_cap[i] > 0)]
        if len(eligible) < 2:
            return
        exhausted: set[int] = set()
        done = 0
        for _ in range(4 * budget + 8):
            if done >= budget:
                break
            util = {i: pool.utilisation(i) for i in eligible}
            low = min(util.values())
            sources = [i for i in eligible if i not in exhausted]
            if not sources:
                break
            src = max(sources, key=lambda i: (util[i], -i))
            if util[src] - low <= s.imbalance_threshold:
                break
            best: tuple[float, str, int] | None = None
            for cid in sorted(pool.cams[src]):
                cam = pool.cams[src][cid]
                if cid in self.moves or cam.pin is not None:
                    continue
                cls = pool.feasibility(cam)
                if cls.reason is not None:
                    continue
                dst, _ = pool.pick(cam, cls, avoid=self.book.avoid(cid), exclude=src, strict=True)
                if dst is None:
                    continue
                gain = util[src] - pool.utilisation_with(dst, cam)
                if best is None or gain > best[0]:
                    best = (gain, cid, dst)
            if best is None or best[0] <= s.incumbency_bonus:
                exhausted.add(src)
                continue
            gain, cid, dst = best
            cam = pool.cams[src][cid]
            pool.remove(src, cam)
            pool.add(dst, cam)
            self.where[cid] = dst
            self._change(cid, pool.nodes[src].id, pool.nodes[dst].id,
                         f"rebalance: {pool.nodes[src].id} at {util[src]:.2f}, "
                         f"{pool.nodes[dst].id} at {util[dst]:.2f}")
            done += 1

    def _result(self) -> Plan:
        pool, where, current = self.pool, self.where, self.current
        ids = [n.id for n in pool.nodes]
        assignments: dict[str, Assignment] = {}
        moves: list[Move] = []
        for cid in self.cameras:  # in id order
            a = current.get(cid)
            i = where.get(cid)
            node = None if i is None else ids[i]
            before = a.node if a is not None else None
            if a is not None and node == before:
                assignments[cid] = a
                continue
            rev = a.revision if a is not None else 0
            if node != before:
                rev += 1
                _, _, reason = self.moves.get(cid, (before, node, "placed"))
                moves.append(Move(cid, before, node, rev, reason))
            assignments[cid] = Assignment(cid, node, rev)
        for cid in sorted(self.current):
            a = self.current[cid]
            if cid not in self.cameras and a.node is not None:
                moves.append(Move(cid, a.node, None, a.revision + 1, "camera removed"))
        retry = [u.retry_at for u in self.unplaced.values() if u.retry_at is not None]
        loads = {n.id: NodeLoad(n.id, pool.dec_used[i], pool.inf_used[i], len(pool.cams[i]),
                                pool.utilisation(i))
                 for i, n in enumerate(pool.nodes)}
        drained = tuple(n.id for i, n in enumerate(pool.nodes)
                        if n.state is NodeState.DRAINING and not pool.cams[i])
        return Plan(assignments, tuple(moves), dict(sorted(self.unplaced.items())), tuple(self.warnings),
                    self.book.freeze(set(self.cameras)), min(retry) if retry else None, drained, loads)


def plan(nodes: Iterable[Node], cameras: Iterable[Camera], current: Mapping[str, Assignment] | None = None,
         settings: PlacementSettings | None = None, history: History | None = None,
         now: float = 0.0) -> Plan:
    """Place ``cameras`` on ``nodes`` given the ``current`` assignments (camera id → Assignment).

    ``history``: the previous plan's ``history`` (back-off and lost-node memory); ``now``:
    seconds on the caller's clock, the same clock every pass. Raises ValueError on duplicate
    ids, a non-finite ``now`` or an assignment whose camera key and id differ. Deterministic:
    the same input gives the same plan, whatever the order of ``nodes`` and ``cameras``.
    """
    node_list = sorted(nodes, key=lambda n: n.id)
    cam_list = sorted(cameras, key=lambda c: c.id)
    _unique("node", (n.id for n in node_list))
    _unique("camera", (c.id for c in cam_list))
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise ValueError(f"now: must be a finite number of seconds, got {now!r}")
    current = current or {}
    for key, a in current.items():
        if key != a.camera:
            raise ValueError(f"current assignments: key {key!r} holds the assignment of camera {a.camera!r}")
    return _Pass(node_list, {c.id: c for c in cam_list}, current, settings or PlacementSettings(),
                 history or History(), now).run()
