"""Which agents are in the fleet, from the registry and the heartbeats: pure logic, no I/O.

A node is

* ``alive`` while its heartbeats arrive;
* ``expired`` once the store says its heartbeat key expired (``heartbeat_ttl_s``
  after the last beat) in every heartbeat bucket that held one (there are two:
  see :data:`~camfleet.cluster.registry.ALIVE_BUCKETS`);
* ``lost`` when no beat came in the ``grace_s`` after that expiry, or at once
  when it said it was ``leaving`` (a clean stop);
* ``registered``: known from the registry only, never seen beating (yet).

Why the expiry and not a timer alone: when the NATS server leading the
heartbeat bucket dies, no beat can be written until the others elect a new
leader (5-7 s, more on a loaded machine). The store's expiry markers are
written only once it is back, and from then on the agents' beats get through
again within a beat or two: a node is declared lost only when the store works
and it still does not beat, however long the store was away. A fallback timer
(``2 * heartbeat_ttl_s + grace_s`` without a beat) covers an expiry this
coordinator missed.

The coordinator feeds it what its KV watches deliver and calls :meth:`sweep`
regularly; each method returns the state changes it caused. Times are
monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .registry import FleetTiming, Heartbeat, NodeRecord

__all__ = ["Change", "Member", "Membership", "MemberState"]

MemberState = Literal["registered", "alive", "expired", "lost"]


@dataclass
class Member:
    """One node as the coordinator sees it; ``last_beat`` in monotonic seconds (None: never seen beating)."""

    node_id: str
    state: MemberState
    record: NodeRecord | None = None
    last_beat: float | None = None
    started_at: float | None = None
    expired_at: float | None = None
    beating_in: set[int] = field(default_factory=set)
    """The heartbeat buckets (indexes) holding a live key of the node."""


@dataclass(frozen=True)
class Change:
    """``node_id`` went from ``old`` (None: unknown) to ``new``; ``reason`` says why."""

    node_id: str
    old: MemberState | None
    new: MemberState
    reason: str


class Membership:
    """The table of members and the rules that move them between states."""

    def __init__(self, timing: FleetTiming) -> None:
        self.timing = timing
        self._members: dict[str, Member] = {}
        # when this coordinator last saw any heartbeat at all (monotonic s): its own view of the
        # buckets is live only while beats keep arriving from someone
        self._last_any_beat = float("-inf")
        self._view_since = float("-inf")  # when beats last resumed after a gap of a TTL or more

    def members(self) -> dict[str, Member]:
        """A copy of the table."""
        return {k: Member(**{**vars(m), "beating_in": set(m.beating_in)}) for k, m in self._members.items()}

    def member(self, node_id: str) -> Member | None:
        """A copy of one member (None: not known); cheaper than :meth:`members` for one node."""
        m = self._members.get(node_id)
        return None if m is None else Member(**{**vars(m), "beating_in": set(m.beating_in)})

    def alive(self) -> list[str]:
        """The ids of the nodes that are alive, sorted."""
        return sorted(k for k, m in self._members.items() if m.state == "alive")

    def _set(self, member: Member, new: MemberState, reason: str, changes: list[Change]) -> None:
        if member.state != new:
            changes.append(Change(member.node_id, member.state, new, reason))
            member.state = new

    def registered(self, record: NodeRecord) -> list[Change]:
        """A registration record was written (a start, or a change of labels or capacity)."""
        changes: list[Change] = []
        member = self._members.get(record.node_id)
        if member is None:
            member = self._members[record.node_id] = Member(record.node_id, "registered", record)
            changes.append(Change(record.node_id, None, "registered", f"registered from {record.hostname}"))
        member.record = record
        return changes

    def unregistered(self, node_id: str) -> list[Change]:
        """The registration record was deleted: the node is forgotten once it is not alive."""
        member = self._members.get(node_id)
        if member is None or member.state == "alive":
            return []
        del self._members[node_id]
        return [Change(node_id, member.state, "lost", "registration deleted")]

    def beat(self, beat: Heartbeat, now: float, bucket: int = 0) -> list[Change]:
        """A heartbeat arrived in heartbeat bucket ``bucket`` (``now``: when this coordinator saw it)."""
        changes: list[Change] = []
        member = self._members.get(beat.node_id)
        if member is None:
            member = self._members[beat.node_id] = Member(beat.node_id, "registered")
            changes.append(Change(beat.node_id, None, "registered", "heartbeat before its registration"))
        if beat.leaving:
            member.last_beat = None
            member.beating_in.clear()
            self._set(member, "lost", "stopped cleanly", changes)
            return changes
        member.beating_in.add(bucket)
        if now - self._last_any_beat >= self.timing.heartbeat_ttl_s:
            self._view_since = now
        self._last_any_beat = max(self._last_any_beat, now)
        restarted = member.started_at is not None and beat.started_at != member.started_at
        member.last_beat, member.started_at, member.expired_at = now, beat.started_at, None
        if restarted and member.state == "alive":
            changes.append(Change(beat.node_id, "alive", "alive", "restarted"))
        self._set(member, "alive", "heartbeat", changes)
        return changes

    def expired(self, node_id: str, now: float, bucket: int = 0) -> list[Change]:
        """The node's heartbeat key in heartbeat bucket ``bucket`` expired or was deleted.

        The node is expired once no bucket holds a live key of it.
        """
        changes: list[Change] = []
        member = self._members.get(node_id)
        if member is not None:
            member.beating_in.discard(bucket)
        if member is not None and member.state == "alive" and not member.beating_in:
            member.expired_at = now
            self._set(member, "expired", "heartbeat expired", changes)
        return changes + self.sweep(now)

    def sweep(self, now: float) -> list[Change]:
        """Expired nodes without a beat for ``grace_s`` since, or silent past the fallback, become lost.

        The fallback (silence alone, no expiry seen) counts only while this coordinator's view is
        live (some node's beat arrived within the last TTL), and silence is counted from when the
        view last came back at the earliest. When every node falls silent at once,
        the likelier cause is this coordinator's own watches (its NATS server killed, the watch
        being re-created): a leader elected meanwhile on its own connection would otherwise count
        the whole fleet lost and move every camera. Real losses still come through the expiries.
        """
        changes: list[Change] = []
        fallback = 2 * self.timing.heartbeat_ttl_s + self.timing.grace_s
        view_live = now - self._last_any_beat < self.timing.heartbeat_ttl_s
        for member in self._members.values():
            if member.state == "expired" and member.expired_at is not None \
                    and now - member.expired_at >= self.timing.grace_s:
                self._set(member, "lost", f"heartbeat expired {now - member.expired_at:.1f} s ago", changes)
            elif view_live and member.state in ("alive", "expired") and member.last_beat is not None \
                    and now - max(member.last_beat, self._view_since) >= fallback:
                self._set(member, "lost", f"no heartbeat for {now - member.last_beat:.1f} s", changes)
        return changes
