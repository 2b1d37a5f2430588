"""The leader's duties: place the fleet's cameras and write each node's desired state, safely.

While its coordinator leads, a :class:`FleetLeader` runs scheduling passes
when something changes (an apply, a node joined or lost, a drain, cordon or
uncordon, a node confirming it stopped a camera, a held camera's back-off
ending). Each pass runs the pure placement (:mod:`.placement`) and writes the
desired states in the safe order of :mod:`.scheduler`, each key by
compare-and-set on its last revision, each only while still leading.

A new leader first reads every node's desired state and the applied reports
and adopts them: the incumbents stay, so a handover restarts no camera. A
camera that a previous leader had taken off a live node but not yet placed
again (the node had not confirmed) is found from the database's assignments
and waits for that confirmation too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from camfleet.fleetstore.store import FleetCamera, FleetStore
from camfleet.store.errors import StoreError

from .fleetconfig import placement_camera
from .kv import Bucket, KvError
from .membership import Member
from .placement import History, PlacementSettings, Plan, plan
from .registry import AppliedReport, DesiredNode, RecordError
from .scheduler import Transit, current_assignments, desired_writes, gone_nodes, placement_nodes

__all__ = ["FleetLeader"]

log = logging.getLogger("camfleet.cluster.leader")

TICK_S = 5.0
"""A pass at least this often while leading (seconds), whatever wakes it."""


def status_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """The part of a node's ``NodeStatus`` JSON kept centrally: per camera state, rates, errors."""
    cams: dict[str, Any] = {}
    cameras = raw.get("cameras")
    if isinstance(cameras, dict):
        for name, c in list(cameras.items())[:10000]:
            if isinstance(c, dict):
                cams[str(name)[:128]] = {
                    k: c.get(k)
                    for k in (
                        "state",
                        "reason",
                        "decode_fps",
                        "processed_fps",
                        "detector_rps",
                        "cpu_percent",
                        "inference_ms",
                        "restarts",
                        "last_error",
                    )
                }
    detectors = raw.get("detectors")
    dets = {
        str(k)[:128]: (v.get("state") if isinstance(v, dict) else None)
        for k, v in (detectors.items() if isinstance(detectors, dict) else [])
    }
    det_cpu = sum(
        _number(v.get("cpu_percent")) for v in (detectors.values() if isinstance(detectors, dict) else [])
        if isinstance(v, dict)
    )
    return {"at": raw.get("at"), "cameras": cams, "detectors": dets,
            "detector_cpu_percent": round(det_cpu, 1)}


def _number(value: Any) -> float:
    """``value`` when it is a finite number from a node's report, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)


def node_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """A node's totals from its :func:`status_summary` (the ``node_figures`` of the ``status`` verb).

    Its processes' CPU (% of one core, cameras and detectors), frames/s decoded and analysed,
    detector requests/s, its detectors, its cameras by state, the report's time (epoch s).
    """
    cams = [c for c in (summary.get("cameras") or {}).values() if isinstance(c, dict)]
    states: dict[str, int] = {}
    for c in cams:
        state = str(c.get("state") or "unknown")
        states[state] = states.get(state, 0) + 1
    cpu = sum(_number(c.get("cpu_percent")) for c in cams) + _number(summary.get("detector_cpu_percent"))
    return {
        "at": summary.get("at") if isinstance(summary.get("at"), int | float) else None,
        "cpu_percent": round(cpu, 1),
        "decode_fps": round(sum(_number(c.get("decode_fps")) for c in cams), 1),
        "processed_fps": round(sum(_number(c.get("processed_fps")) for c in cams), 1),
        "detector_rps": round(sum(_number(c.get("detector_rps")) for c in cams), 1),
        "detectors": len(summary.get("detectors") or {}),
        "states": states,
    }


class FleetLeader:
    """Scheduling passes and their writes for one coordinator (acts only while ``leading()`` is true).

    ``members``: the coordinator's membership table now; ``desired_bucket``: ``camfleet_desired``.
    """

    def __init__(
        self,
        store: FleetStore,
        desired_bucket: Bucket,
        members: Callable[[], dict[str, Member]],
        leading: Callable[[], bool],
        settings: PlacementSettings | None = None,
    ) -> None:
        self.store = store
        self.bucket = desired_bucket
        self.members = members
        self.leading = leading
        self.settings = settings or PlacementSettings()
        self.applied: dict[str, AppliedReport] = {}  # kept by the coordinator's watch, leading or not
        self.statuses: dict[str, dict[str, Any]] = {}
        self.term = 0
        self.revision = 0
        self.desired: dict[str, DesiredNode] = {}
        self.kv_rev: dict[str, int] = {}
        self.transit: dict[str, Transit] = {}
        self.history = History()
        self.last_plan: Plan | None = None
        self.cameras: dict[str, FleetCamera] = {}
        self.flags: dict[str, tuple[bool, bool]] = {}
        self.passes = 0
        self.error: str | None = None  # why the last pass failed (None: it worked)
        self.paused: str | None = None  # why this leader places nothing (a database behind the fleet)
        self._unrecorded = False  # desired states written that the database does not know yet
        self._history_due: list[tuple[str, str | None, str | None, int, str]] = []
        self._wake = asyncio.Event()
        self._passed = asyncio.Condition()
        self._dirty_status: set[str] = set()

    # ------------------------------------------------------------------ inputs from the coordinator
    def wake(self) -> None:
        """Ask for a scheduling pass soon (safe from the event loop only)."""
        self._wake.set()

    def applied_report(self, node_id: str, report: AppliedReport) -> None:
        """A node's applied report arrived: confirmations may let cameras in transit move on."""
        self.applied[node_id] = report
        if any(t.source == node_id for t in self.transit.values()):
            self.wake()

    def node_status(self, node_id: str, raw: dict[str, Any]) -> None:
        """A node's status snapshot arrived (kept; the leader writes it to the database every few seconds)."""
        self.statuses[node_id] = status_summary(raw)
        self._dirty_status.add(node_id)

    # ------------------------------------------------------------------ leading
    async def lead(self, term: int, synced: asyncio.Event) -> None:
        """Lead with ``term`` until ``leading()`` turns false: adopt the fleet's state, then run passes."""
        self.term = term
        await synced.wait()
        while self.leading():
            try:
                await self._adopt()
                break
            except (KvError, StoreError, RecordError) as exc:
                self.error = f"cannot read the fleet's state: {exc}"
                log.warning("leader: %s (again in 1 s)", self.error)
                await asyncio.sleep(1.0)
        flusher = asyncio.create_task(self._flush_statuses(), name="status-flush")
        try:
            await self._write_members()
            while self.leading():
                retry = self.last_plan.retry_at if self.last_plan else None
                timeout = TICK_S if retry is None else max(0.05, min(TICK_S, retry - time.monotonic()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                if not self.leading():
                    break
                await self.run_pass()
                await asyncio.sleep(0.02)  # let a burst of changes gather into one pass
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            async with self._passed:
                self._passed.notify_all()

    async def _adopt(self) -> None:
        """Read every node's desired state, the counters, cameras, flags and cameras in transit."""
        desired: dict[str, DesiredNode] = {}
        kv_rev: dict[str, int] = {}
        async for entry in self.bucket.watch():
            if entry is None:
                break
            if entry.deleted:
                continue
            try:
                desired[entry.key] = DesiredNode.from_bytes(entry.value, entry.key)
            except RecordError as exc:
                log.error("leader: %s; the key will be rewritten", exc)
                desired[entry.key] = DesiredNode(entry.key, 0, 0)
            kv_rev[entry.key] = entry.revision
        self.desired, self.kv_rev = desired, kv_rev
        self.cameras = await asyncio.to_thread(self.store.cameras)
        self.flags = await asyncio.to_thread(self.store.flags)
        stored_rev = await asyncio.to_thread(self.store.counter, "revision")
        written = max([0, *(d.revision for d in desired.values())])
        self.revision = max(stored_rev, written)
        # A leader raises the database's revision before it writes a desired state, so a database behind
        # the desired states is not the one the fleet was placed from (each coordinator on its own SQLite
        # file?): placing from it would stop cameras everywhere. Nothing is changed until an apply says
        # what the fleet is.
        self.paused = None
        if stored_rev < written:
            self.paused = (
                f"the fleet database {self.store.shown} is behind the nodes' desired states "
                f"(revision {stored_rev} < {written}): every coordinator must use the same --db; "
                "nothing is placed until `camfleet cluster apply` gives the fleet's cameras"
            )
            log.error("leader: %s", self.paused)
        held = {c for d in desired.values() for c in d.cameras}
        self.transit = {}
        for cam, (node, _token) in (await asyncio.to_thread(self.store.assignments)).items():
            d = desired.get(node)
            if cam in held or cam not in self.cameras or d is None:
                continue
            report = self.applied.get(node)
            if report is None or report.revision < d.revision:
                self.transit[cam] = Transit(node, d.revision, None)
        self.error = None
        log.info(
            "leader (term %d): adopted %d node(s)' desired state, %d camera(s), revision %d%s",
            self.term,
            len(desired),
            len(self.cameras),
            self.revision,
            f", {len(self.transit)} in transit" if self.transit else "",
        )

    async def _write_members(self) -> None:
        members = self.members()
        for node_id, m in members.items():
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(
                    self.store.update_node,
                    node_id,
                    state=m.state,
                    record=dataclasses.asdict(m.record) if m.record else None,
                )

    async def member_changed(self, member: Member | None, node_id: str, state: str) -> None:
        """Record a member's new state in the database (leader only) and ask for a pass."""
        self.wake()
        if not self.leading():
            return
        values: dict[str, Any] = {"state": state}
        if member is not None and member.record is not None:
            values["record"] = dataclasses.asdict(member.record)
        try:
            await asyncio.to_thread(self.store.update_node, node_id, **values)
        except StoreError as exc:
            log.warning("leader: %s", exc)

    async def _flush_statuses(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            dirty, self._dirty_status = self._dirty_status, set()
            for node_id in sorted(dirty):
                summary = self.statuses.get(node_id)
                applied = self.applied.get(node_id)
                try:
                    await asyncio.to_thread(
                        self.store.update_node,
                        node_id,
                        status=summary,
                        status_at=time.time(),
                        applied=dataclasses.asdict(applied) if applied else None,
                    )
                except StoreError as exc:
                    log.warning("leader: %s", exc)
                    break

    # ------------------------------------------------------------------ a pass
    async def reload(self) -> None:
        """Read the cameras and flags again (after an apply, drain, cordon or uncordon) and ask for a pass."""
        self.cameras = await asyncio.to_thread(self.store.cameras)
        self.flags = await asyncio.to_thread(self.store.flags)
        self.wake()

    async def wait_pass(self, timeout_s: float) -> bool:
        """Wait for the next pass to finish (True) or ``timeout_s`` seconds (False)."""
        start = self.passes
        self.wake()
        async with self._passed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._passed.wait_for(lambda: self.passes > start or not self.leading()), timeout_s
                )
        return self.passes > start

    def _confirm_transit(self, gone: set[str]) -> None:
        for cam, t in list(self.transit.items()):
            report = self.applied.get(t.source)
            if (
                t.source in gone
                or cam not in self.cameras
                or (
                    report is not None
                    and (report.revision >= t.revision or (report.fenced and cam not in report.cameras))
                )
            ):
                del self.transit[cam]

    async def run_pass(self) -> None:
        """One scheduling pass and its writes; failures are logged and retried at the next pass."""
        try:
            await self._pass()
            self.error = self.paused
        except (KvError, StoreError) as exc:
            self.error = str(exc)
            log.warning("leader: pass failed: %s (retrying)", exc)
            await asyncio.sleep(0.5)
            self.wake()
        finally:
            self.passes += 1
            async with self._passed:
                self._passed.notify_all()

    async def _record(self, history: list[tuple[str, str | None, str | None, int, str]]) -> None:
        """Write where every camera may run now, and ``history``, to the database (kept for a retry)."""
        self._history_due.extend(history)
        where = {c: (n, dc.token) for n, d in self.desired.items() for c, dc in d.cameras.items()}
        where.update({c: (t.source, t.revision) for c, t in self.transit.items() if c not in where})
        await asyncio.to_thread(self.store.record_placements, where, self._history_due, self.term)
        self._history_due = []
        self._unrecorded = False

    async def resume(self) -> None:
        """An apply said what the fleet is: place from the database again (see :meth:`_adopt`)."""
        if self.paused is not None:
            await asyncio.to_thread(self.store.raise_counter, "revision", self.revision)
            log.warning("leader: placing again after an apply (was: %s)", self.paused)
            self.paused = None

    async def _pass(self) -> None:
        if self.paused is not None:
            self.error = self.paused
            return
        members = self.members()
        gone = gone_nodes(members, self.desired)
        self._confirm_transit(gone)
        nodes = placement_nodes(members, self.flags)
        cams = [placement_camera(c) for c in self.cameras.values()]
        current = current_assignments(self.desired, self.transit)
        result = plan(nodes, cams, current, self.settings, self.history, time.monotonic())
        self.history = result.history
        self.last_plan = result
        targets = {c: a.node for c, a in result.assignments.items()}
        settings = {c: fc.settings for c, fc in self.cameras.items()}
        writes, leaving = desired_writes(self.desired, targets, settings, gone, self.transit)
        if not writes:
            if self._unrecorded:
                await self._record([])
            return
        reasons = {m.camera: (m.source, m.reason) for m in result.moves}
        await asyncio.to_thread(self.store.raise_counter, "revision", self.revision + len(writes))
        history: list[tuple[str, str | None, str | None, int, str]] = []
        for w in writes:
            if not self.leading():
                log.warning("leader: no longer leading; %s not written", w.node)
                return
            self.revision += 1
            record = w.desired(self.revision, self.term, time.time())
            last = self.kv_rev.get(w.node)
            if last is None:
                rev = await self.bucket.create(w.node, record.to_bytes())
            else:
                rev = await self.bucket.update(w.node, record.to_bytes(), last=last)
            if rev is None:
                entry = await self.bucket.get(w.node)
                if entry is not None:
                    self.desired[w.node] = DesiredNode.from_bytes(entry.value, w.node)
                    self.kv_rev[w.node] = entry.revision
                raise KvError(f"desired state of {w.node} changed under this leader; read again")
            self.desired[w.node], self.kv_rev[w.node] = record, rev
            for cam in w.removed:
                if cam in leaving:
                    self.transit[cam] = Transit(w.node, self.revision, leaving[cam][1])
                    history.append(
                        (
                            cam,
                            w.node,
                            leaving[cam][1],
                            self.revision,
                            f"{reasons.get(cam, (None, 'moved'))[1]}: stopping on {w.node} first",
                        )
                    )
                elif cam not in self.cameras:
                    history.append((cam, w.node, None, self.revision, "camera removed"))
                elif w.node in gone and targets.get(cam) is None:  # held: placed again later
                    history.append(
                        (
                            cam,
                            w.node,
                            targets.get(cam),
                            self.revision,
                            reasons.get(cam, (None, f"node {w.node} lost"))[1],
                        )
                    )
            for cam in w.added:
                source, why = reasons.get(cam, (None, "placed"))
                history.append((cam, source, w.node, self.revision, why))
            log.info(
                "leader: %s <- revision %d: %d camera(s)%s%s",
                w.node,
                self.revision,
                len(w.settings),
                f", +{','.join(w.added)}" if w.added else "",
                f", -{','.join(w.removed)}" if w.removed else "",
            )
        self._unrecorded = True  # the keys are written: the database must follow, even if it fails now
        await self._record(history)
        self.wake()  # another pass: more drain or rebalance batches may follow (one with no writes ends it)
