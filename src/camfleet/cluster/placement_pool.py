"""Node loads and per-feasibility-class heaps: the placement scheduler's index.

Cameras with the same selector, hardware, codec and pin form a *feasibility class*: the same
nodes suit them all, whatever their size. Each class keeps a heap of its nodes ordered by the
strategy's score (spread: least utilised first; binpack: most utilised first), with lazy
deletion by a per-node version. A node that cannot fit a camera's demand is *parked* in its
class under that demand and skipped for every camera of the class at least as large, so
placing k cameras costs about O(k log N) instead of O(k x N). Built lazily per class: a pass
that places only a lost node's cameras touches only their classes.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from camfleet.cluster.placement_types import Camera, Node, NodeState, Strategy

# Relative slack on capacity comparisons, so that float sums of demands equal to a node's
# capacity still fit after any order of additions and removals.
_SLACK = 1e-9

#: (already failed this camera, anti-affinity group members there, node lost recently): lower is better.
Penalty = tuple[int, int, int]
ZERO: Penalty = (0, 0, 0)

ClassKey = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, int], ...], str, str | None]


def class_key(cam: Camera) -> ClassKey:
    """The feasibility class of ``cam`` (selector, hardware, codec, pin)."""
    return (tuple(sorted(cam.selector.items())), tuple(sorted(cam.hardware.items())), cam.codec, cam.pin)


def mpx(pps: float) -> str:
    """Pixels/s as 'N.N Mpx/s'."""
    return f"{pps / 1e6:.1f} Mpx/s"


class FeasibilityClass:
    """One class's nodes: heap of (score, node, version), parked nodes, why none suits (if so)."""

    __slots__ = ("buckets", "hardware", "heap", "key", "last", "left", "members", "parked", "reason")

    def __init__(self, key: ClassKey, members: list[int], reason: str | None) -> None:
        self.key = key
        self.hardware = key[1]
        self.members = members
        self.reason = reason  # static: no schedulable node suits this class at all
        self.heap: list[tuple[float, int, int]] = []
        self.parked: dict[int, tuple[float, float]] = {}
        self.buckets: dict[tuple[float, float], set[int]] = {}
        self.last: tuple[float, float] | None = None
        # (pool changes when computed, hardware free per kind, node with most decode left,
        # node with most inference left)
        self.left: tuple[int, dict[str, int], int, int] | None = None


class Pool:
    """Per-node used capacity, cameras and anti-affinity counts, plus the feasibility classes."""

    def __init__(self, nodes: Sequence[Node], strategy: Strategy, recently_lost: set[int]) -> None:
        self.nodes = list(nodes)
        self.index = {n.id: i for i, n in enumerate(self.nodes)}
        self.binpack = strategy is Strategy.BINPACK
        self.dec_cap = [float(n.decode_pps) for n in self.nodes]
        self.inf_cap = [float(n.infer_ps) for n in self.nodes]
        self.dec_used = [0.0] * len(self.nodes)
        self.inf_used = [0.0] * len(self.nodes)
        self.hw_used: list[dict[str, int]] = [{} for _ in self.nodes]
        self.version = [0] * len(self.nodes)
        self.changes = 0  # load changes so far: keys the capacity-reason cache
        self.cams: list[dict[str, Camera]] = [{} for _ in self.nodes]
        self.groups: dict[tuple[str, int], int] = {}
        self.classes: dict[str, FeasibilityClass] = {}
        self.misfits: dict[tuple[str, int], str | None] = {}
        self.node_classes: list[list[FeasibilityClass]] = [[] for _ in self.nodes]
        self.recently_lost = recently_lost
        self.schedulable = [i for i, n in enumerate(self.nodes) if n.state is NodeState.SCHEDULABLE]
        # Schedulable nodes per label: a class with a selector (or a pin) looks only at those.
        self.by_label: dict[tuple[str, str], list[int]] = {}
        for i in self.schedulable:
            for kv in self.nodes[i].labels.items():
                self.by_label.setdefault(kv, []).append(i)

    # -- loads ---------------------------------------------------------------------------

    def utilisation(self, i: int) -> float:
        """Node ``i``'s utilisation: max of decode and inference used / capacity."""
        return max(_share(self.dec_used[i], self.dec_cap[i]), _share(self.inf_used[i], self.inf_cap[i]))

    def utilisation_with(self, i: int, cam: Camera) -> float:
        """Node ``i``'s utilisation if ``cam`` were added."""
        return max(_share(self.dec_used[i] + cam.decode_pps, self.dec_cap[i]),
                   _share(self.inf_used[i] + cam.infer_ps, self.inf_cap[i]))

    def fits(self, i: int, cam: Camera) -> bool:
        """Whether node ``i`` has the decode, inference and hardware left for ``cam``."""
        if self.dec_used[i] + cam.decode_pps > self.dec_cap[i] * (1 + _SLACK) + _SLACK:
            return False
        if self.inf_used[i] + cam.infer_ps > self.inf_cap[i] * (1 + _SLACK) + _SLACK:
            return False
        if cam.hardware:
            have, used = self.nodes[i].hardware, self.hw_used[i]
            for kind, need in cam.hardware.items():
                if used.get(kind, 0) + need > have.get(kind, 0):
                    return False
        return True

    def over(self, i: int) -> bool:
        """Whether node ``i`` carries more than its capacity (capacity shrank or demand grew)."""
        if self.dec_used[i] > self.dec_cap[i] * (1 + _SLACK) + _SLACK:
            return True
        if self.inf_used[i] > self.inf_cap[i] * (1 + _SLACK) + _SLACK:
            return True
        have = self.nodes[i].hardware
        return any(n > have.get(kind, 0) for kind, n in self.hw_used[i].items())

    def add(self, i: int, cam: Camera) -> None:
        """Put ``cam``'s load on node ``i`` (no capacity check: see :meth:`fits`)."""
        self.dec_used[i] += cam.decode_pps
        self.inf_used[i] += cam.infer_ps
        for kind, need in cam.hardware.items():
            self.hw_used[i][kind] = self.hw_used[i].get(kind, 0) + need
        self.cams[i][cam.id] = cam
        if cam.group is not None:
            self.groups[(cam.group, i)] = self.groups.get((cam.group, i), 0) + 1
        self._changed(i, freed=False)

    def load(self, i: int, cam: Camera) -> None:
        """Put an incumbent's load on node ``i`` while no class exists yet (no heap upkeep)."""
        self.dec_used[i] += cam.decode_pps
        self.inf_used[i] += cam.infer_ps
        if cam.hardware:
            used = self.hw_used[i]
            for kind, need in cam.hardware.items():
                used[kind] = used.get(kind, 0) + need
        self.cams[i][cam.id] = cam
        if cam.group is not None:
            self.groups[(cam.group, i)] = self.groups.get((cam.group, i), 0) + 1
        self.version[i] += 1

    def remove(self, i: int, cam: Camera) -> None:
        """Take ``cam``'s load off node ``i``."""
        self.dec_used[i] = max(0.0, self.dec_used[i] - cam.decode_pps)
        self.inf_used[i] = max(0.0, self.inf_used[i] - cam.infer_ps)
        for kind, need in cam.hardware.items():
            self.hw_used[i][kind] -= need
        del self.cams[i][cam.id]
        if cam.group is not None:
            self.groups[(cam.group, i)] -= 1
        self._changed(i, freed=True)

    def _score(self, i: int) -> float:
        u = self.utilisation(i)
        return -u if self.binpack else u

    def _changed(self, i: int, *, freed: bool) -> None:
        self.version[i] += 1
        self.changes += 1
        if not self.node_classes[i]:
            return
        ver, score = self.version[i], self._score(i)
        for cls in self.node_classes[i]:
            if i in cls.parked:
                if not freed:
                    continue  # fuller than when parked: still cannot fit what it was parked for
                cls.buckets[cls.parked.pop(i)].discard(i)
            heapq.heappush(cls.heap, (score, i, ver))

    # -- feasibility ---------------------------------------------------------------------

    def static_misfit(self, key: ClassKey, i: int) -> str | None:
        """Why node ``i`` can never run cameras of class ``key`` (state aside), or None."""
        selector, hardware, codec, pin = key
        node = self.nodes[i]
        if pin is not None and pin != node.id:
            return f"pinned to {pin}"
        for k, v in selector:
            if node.labels.get(k) != v:
                return f"{node.id} lacks label {k}={v}"
        if codec not in node.codecs:
            return f"{node.id} does not decode {codec}"
        for kind, need in hardware:
            if node.hardware.get(kind, 0) < need:
                return f"{node.id} has {node.hardware.get(kind, 0)} {kind}, needs {need}"
        return None

    def misfit(self, cam: Camera, i: int) -> str | None:
        """Why node ``i`` can never run ``cam`` (state aside), or None; cached per class and node."""
        k = (cam.feasibility, i)
        try:
            return self.misfits[k]
        except KeyError:
            why = self.misfits[k] = self.static_misfit(class_key(cam), i)
            return why

    def feasibility(self, cam: Camera) -> FeasibilityClass:
        """The feasibility class of ``cam``, built (O(schedulable nodes)) on first use."""
        cls = self.classes.get(cam.feasibility)
        if cls is not None:
            return cls
        key = class_key(cam)
        selector, _, _, pin = key
        if pin is not None:
            j = self.index.get(pin)
            cands = [j] if j is not None and self.nodes[j].state is NodeState.SCHEDULABLE else []
        elif selector:
            cands = min((self.by_label.get(kv, []) for kv in selector), key=len)
        else:
            cands = self.schedulable
        members = [i for i in cands if self.static_misfit(key, i) is None]
        cls = FeasibilityClass(key, members, None if members else self._why_none(key))
        self.classes[cam.feasibility] = cls
        for i in members:
            self.node_classes[i].append(cls)
            cls.heap.append((self._score(i), i, self.version[i]))
        heapq.heapify(cls.heap)
        return cls

    def _why_none(self, key: ClassKey) -> str:
        selector, hardware, codec, pin = key
        if pin is not None:
            j = self.index.get(pin)
            if j is None:
                return f"pinned to {pin}, which is not a known node"
            if self.nodes[j].state is not NodeState.SCHEDULABLE:
                return f"pinned to {pin}, which is {self.nodes[j].state.value}"
            return f"pinned to {pin}, but {self.static_misfit((selector, hardware, codec, None), j)}"
        cands = [self.nodes[i] for i in self.schedulable]
        if not cands:
            counts: dict[str, int] = {}
            for n in self.nodes:
                counts[n.state.value] = counts.get(n.state.value, 0) + 1
            detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            return f"no schedulable node ({detail or 'no nodes'})"
        for k, v in selector:
            if not any(n.labels.get(k) == v for n in cands):
                return f"no schedulable node has label {k}={v}"
        cands = [n for n in cands if all(n.labels.get(k) == v for k, v in selector)]
        with_labels = f" with {', '.join(f'{k}={v}' for k, v in selector)}" if selector else ""
        if not cands:
            return f"no schedulable node has all of the labels {', '.join(f'{k}={v}' for k, v in selector)}"
        cands = [n for n in cands if codec in n.codecs]
        if not cands:
            return f"no schedulable node{with_labels} decodes {codec}"
        for kind, need in hardware:
            cands = [n for n in cands if n.hardware.get(kind, 0) >= need]
            if not cands:
                return f"needs {need} {kind}; no schedulable node{with_labels} has {need}"
        raise AssertionError("class has members")  # pragma: no cover

    # -- choosing --------------------------------------------------------------------------

    def penalty(self, i: int, cam: Camera, avoid: frozenset[str]) -> Penalty:
        """How much placing ``cam`` on node ``i`` goes against soft preferences (ZERO: not at all)."""
        return (1 if self.nodes[i].id in avoid else 0,
                self.groups.get((cam.group, i), 0) if cam.group is not None else 0,
                1 if i in self.recently_lost else 0)

    def pick(self, cam: Camera, cls: FeasibilityClass, *, avoid: frozenset[str] = frozenset(),
             exclude: int | None = None, strict: bool = False) -> tuple[int | None, Penalty]:
        """The best node of ``cls`` that fits ``cam`` (nothing is committed).

        Best = first in strategy order with no penalty; if every node that fits has one, the
        least penalised (``strict``: None instead). ``exclude``: a node not to consider.
        """
        demand = (cam.decode_pps, cam.infer_ps)
        if cls.last != demand:
            # Nodes parked for a demand this camera does not dominate might fit it: wake them.
            for parked_for in [b for b in cls.buckets if not (demand[0] >= b[0] and demand[1] >= b[1])]:
                for i in sorted(cls.buckets.pop(parked_for)):
                    del cls.parked[i]
                    heapq.heappush(cls.heap, (self._score(i), i, self.version[i]))
            cls.last = demand
        heap, version, popped = cls.heap, self.version, []
        chosen: int | None = None
        best: int | None = None
        best_pen: Penalty = ZERO
        while heap:
            entry = heapq.heappop(heap)
            i = entry[1]
            if entry[2] != version[i] or i in cls.parked:
                continue  # stale
            if i == exclude:
                popped.append(entry)
                continue
            if not self.fits(i, cam):
                cls.parked[i] = demand
                cls.buckets.setdefault(demand, set()).add(i)
                continue
            popped.append(entry)
            pen = self.penalty(i, cam, avoid)
            if pen == ZERO:
                chosen, best_pen = i, ZERO
                break
            if not strict and (best is None or pen < best_pen):
                best, best_pen = i, pen
        for entry in popped:
            heapq.heappush(heap, entry)
        if chosen is not None:
            return chosen, ZERO
        return best, best_pen

    def capacity_reason(self, cls: FeasibilityClass, cam: Camera) -> str:
        """Why no node of ``cls`` fits ``cam`` now (the resource short, the most left and where)."""
        nodes = self.nodes
        if cls.left is None or cls.left[0] != self.changes:
            # O(members), once per class until a load changes: a full fleet's unplaceable
            # cameras all reuse it.
            free = {kind: max(nodes[i].hardware.get(kind, 0) - self.hw_used[i].get(kind, 0)
                              for i in cls.members)
                    for kind, _ in cls.hardware}
            dec_i = max(cls.members, key=lambda i: (self.dec_cap[i] - self.dec_used[i], -i))
            inf_i = max(cls.members, key=lambda i: (self.inf_cap[i] - self.inf_used[i], -i))
            cls.left = (self.changes, free, dec_i, inf_i)
        _, free, dec_i, inf_i = cls.left
        for kind, need in cls.hardware:
            if free[kind] < need:
                return f"needs {need} {kind}; none free on the {len(cls.members)} matching node(s)"
        dec_left = self.dec_cap[dec_i] - self.dec_used[dec_i]
        inf_left = self.inf_cap[inf_i] - self.inf_used[inf_i]
        if cam.decode_pps > dec_left:
            return (f"capacity: needs {mpx(cam.decode_pps)} decode, most left {mpx(dec_left)} "
                    f"on {nodes[dec_i].id}")
        if cam.infer_ps > inf_left:
            return (f"capacity: needs {cam.infer_ps:.1f} inferences/s, most left {inf_left:.1f} "
                    f"on {nodes[inf_i].id}")
        return (f"capacity: no node has both {mpx(cam.decode_pps)} decode and {cam.infer_ps:.1f} "
                f"inferences/s (and its hardware) left; most decode left {mpx(dec_left)} on "
                f"{nodes[dec_i].id}, most inference left {inf_left:.1f}/s on {nodes[inf_i].id}")


def _share(used: float, cap: float) -> float:
    if cap > 0:
        return used / cap
    return 0.0 if used <= 0 else float("inf")
