"""Leader election as a pure state machine: the rules, no I/O (the driver is :mod:`.elector`).

The lease is one key with a time to live in a replicated KV store:

* **create to win**: a follower that sees the key vacant (absent, deleted or
  expired) creates it; only one create succeeds (the store compares the
  key's revision);
* **candidate, then leader**: the winner counts itself leader only after a
  first compare-and-set renewal succeeds, which proves the key it created is
  still its own;
* **renewal**: every ``renew_s`` by compare-and-set on the revision it last
  wrote; a conflict means someone else holds the lease: step down at once;
* **stepping down in time**: the lease a renewal extends starts no earlier
  than the moment the renewal was *sent*, so the leader stops counting
  itself leader ``margin_s`` before ``sent + lease_ttl_s``, whether or not
  it heard back: by the time the key expires and another coordinator can
  create it, this one has already stopped;
* **term**: the revision of the winning create. Store revisions only grow,
  so a later leader always has a higher term: writes made on a leader's
  behalf carry it and can be fenced.

All times are the caller's monotonic clock, in seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .registry import FleetTiming

__all__ = ["Action", "Election", "Role", "Transition"]


class Role(enum.StrEnum):
    """Where this coordinator stands."""

    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Action(enum.StrEnum):
    """What the driver should do next."""

    CREATE = "create"  # try to create the lease key
    RENEW = "renew"  # compare-and-set the key at our revision
    CHECK = "check"  # read the key (the watch may have missed something)
    WAIT = "wait"  # nothing before next_wakeup()


@dataclass(frozen=True)
class Transition:
    """A change of role; ``reason`` says why, ``term`` is the term held (0 when none)."""

    old: Role
    new: Role
    reason: str
    term: int


class Election:
    """The rules of the lease for the coordinator ``me``; fed what the store said, tells what to do next."""

    def __init__(self, me: str, timing: FleetTiming,
                 on_transition: Callable[[Transition], None] | None = None) -> None:
        self.me = me
        self.timing = timing
        self._on_transition = on_transition
        self.role = Role.FOLLOWER
        self.term = 0  # revision of our winning create while candidate/leader
        self.revision = 0  # revision we last wrote (candidate/leader)
        self.holder: str | None = None  # who holds the lease, as last seen (None: vacant or unknown)
        self.holder_term = 0
        self._vacant = True  # until seen otherwise, try to create
        self._lease_from = 0.0  # send time of our last successful write
        self._renew_at = 0.0
        self._check_at = 0.0
        self._seen_rev = 0  # the newest revision of the key seen or written: older news is stale

    # ---------------------------------------------------------------- queries
    def deadline(self) -> float:
        """When we stop counting ourselves leader unless a renewal succeeds before."""
        return self._lease_from + self.timing.lease_ttl_s - self.timing.margin_s

    def is_leader(self, now: float) -> bool:
        """Leader now: a first renewal succeeded and the lease we last renewed is not near its end."""
        return self.role is Role.LEADER and now < self.deadline()

    def next_action(self, now: float) -> Action:
        """What to do at ``now`` (also steps down when the deadline passed)."""
        self._expire(now)
        if self.role is Role.CANDIDATE:
            return Action.RENEW
        if self.role is Role.LEADER:
            return Action.RENEW if now >= self._renew_at else Action.WAIT
        if self._vacant:
            return Action.CREATE
        return Action.CHECK if now >= self._check_at else Action.WAIT

    def next_wakeup(self, now: float) -> float:
        """Seconds from ``now`` until :meth:`next_action` may say something else than WAIT."""
        if self.role is Role.LEADER:
            return max(0.0, min(self._renew_at, self.deadline()) - now)
        if self.role is Role.CANDIDATE or self._vacant:
            return 0.0
        return max(0.0, self._check_at - now)

    # ---------------------------------------------------------------- what the store said
    def created(self, revision: int, sent_at: float) -> None:
        """Our create succeeded at ``revision`` (sent at ``sent_at``): candidate until a renewal succeeds."""
        self._lease_from = sent_at
        self.term = self.revision = revision
        self._seen_rev = max(self._seen_rev, revision)
        self.holder, self.holder_term, self._vacant = self.me, revision, False
        self._change(Role.CANDIDATE, "created the lease")

    def create_lost(self, now: float) -> None:
        """Our create found the key taken: someone else holds the lease."""
        self._vacant = False
        self._check_at = now + self.timing.renew_s
        if self.role is not Role.FOLLOWER:
            self._change(Role.FOLLOWER, "the lease is held by another coordinator")

    def renewed(self, revision: int, sent_at: float) -> None:
        """Our compare-and-set renewal succeeded at ``revision`` (sent at ``sent_at``)."""
        if self.role is Role.FOLLOWER:
            return  # a late answer after we stepped down: the next renewal will find out
        self._lease_from = sent_at
        self.revision = revision
        self._seen_rev = max(self._seen_rev, revision)
        self._renew_at = sent_at + self.timing.renew_s
        if self.role is Role.CANDIDATE:
            self._change(Role.LEADER, f"first renewal succeeded (term {self.term})")

    def renew_conflict(self, now: float) -> None:
        """Our renewal failed the compare: the key changed (taken over, or expired and re-created)."""
        self._vacant = False
        self._check_at = now  # read who holds it now
        if self.role is not Role.FOLLOWER:
            self._change(Role.FOLLOWER, "lost the lease (revision changed)")

    def failed(self, now: float) -> None:
        """An operation got no answer (no server, timeout): retry soon; the deadline still applies."""
        self._expire(now)
        if self.role is Role.LEADER:
            self._renew_at = min(self._renew_at, now + 0.2)
        self._check_at = now + min(self.timing.renew_s, 0.5)

    def observed(self, holder: str, term: int, revision: int, now: float) -> bool:
        """The key was seen at ``revision`` held by ``holder`` whose term (its create's revision) is ``term``.

        News older than what we have seen or written (a watch lagging behind our own writes) is
        ignored: returns False then.
        """
        if revision < self._seen_rev:
            return False
        self._seen_rev = revision
        self._vacant = False
        self._check_at = now + self.timing.lease_ttl_s
        self.holder, self.holder_term = holder, term
        if self.role is not Role.FOLLOWER and holder != self.me:
            self._change(Role.FOLLOWER, f"the lease is held by {holder}")
        return True

    def vacated(self, now: float, revision: int | None = None) -> bool:
        """The key was seen deleted or expired (at ``revision``; None: a fresh read found nothing).

        A deletion older than what we have seen or written is ignored: returns False then.
        """
        if revision is not None:
            if revision < self._seen_rev:
                return False
            self._seen_rev = revision
        self._vacant = True
        self.holder, self.holder_term = None, 0
        if self.role is not Role.FOLLOWER:
            self._change(Role.FOLLOWER, "the lease expired before a renewal")
        return True

    def resign(self) -> None:
        """Give up the role (a clean stop); the driver deletes the key if it still holds it."""
        if self.role is not Role.FOLLOWER:
            self._change(Role.FOLLOWER, "stopping")

    # ---------------------------------------------------------------- internals
    def _expire(self, now: float) -> None:
        if self.role is not Role.FOLLOWER and now >= self.deadline():
            self._vacant = False
            self._check_at = now
            self._change(Role.FOLLOWER, "could not renew the lease in time")

    def _change(self, new: Role, reason: str) -> None:
        old, term = self.role, self.term
        self.role = new
        if new is Role.FOLLOWER:
            self.term = self.revision = 0
        if old is not new and self._on_transition is not None:
            self._on_transition(Transition(old, new, reason, term))
