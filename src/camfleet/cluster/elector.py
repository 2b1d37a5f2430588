"""Runs :class:`~camfleet.cluster.election.Election` against the lease key in the KV store.

One task watches the key (a vacated lease is seen at once, so a follower
takes over as soon as the old lease expires); the main loop does what the
state machine asks: create, renew by compare-and-set, or read the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from .election import Action, Election, Role, Transition
from .kv import Bucket, KvError
from .registry import LEADER_KEY, FleetTiming, LeaderRecord, RecordError

__all__ = ["LeaderElector", "LeaderInfo"]

log = logging.getLogger("camfleet.cluster.election")


@dataclass(frozen=True)
class LeaderInfo:
    """Who leads, as last seen: the coordinator id, its host and pid, its term."""

    coordinator_id: str
    hostname: str
    pid: int
    term: int


class LeaderElector:
    """Competes for the lease in ``bucket`` as coordinator ``me``; :meth:`is_leader` works from any thread."""

    def __init__(self, bucket: Bucket, me: str, timing: FleetTiming,
                 on_transition: Callable[[Transition], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = bucket
        self._clock = clock
        self._user_cb = on_transition
        self.election = Election(me, timing, self._transition)
        self._since = time.time()
        self._wake = asyncio.Event()
        self._leader: LeaderInfo | None = None
        self._failing = False  # an outage is logged once, not at every retry

    def is_leader(self) -> bool:
        """Whether this coordinator leads now (checked against the lease's deadline, not a cached flag)."""
        return self.election.is_leader(self._clock())

    @property
    def term(self) -> int:
        """Our term while we lead or are candidate (the fencing token), else 0."""
        return self.election.term

    def leader(self) -> LeaderInfo | None:
        """The leader as last seen in the store (None: vacant or not known yet)."""
        return self._leader

    def _transition(self, change: Transition) -> None:
        level = logging.WARNING if change.old is Role.LEADER else logging.INFO
        log.log(level, "election: %s -> %s (%s)%s", change.old, change.new, change.reason,
                f", term {change.term}" if change.term else "")
        if self._user_cb is not None:
            self._user_cb(change)

    def _value(self) -> bytes:
        e = self.election
        return LeaderRecord(coordinator_id=e.me, hostname=socket.gethostname(), pid=os.getpid(),
                            since=self._since, term=e.term).to_bytes()

    async def run(self, stop: asyncio.Event) -> None:
        """Compete until ``stop``; then give the lease up (delete it) if we hold it."""
        watcher = asyncio.create_task(self._watch(), name="leader-watch")
        try:
            while not stop.is_set():
                await self._step()
                delay = self.election.next_wakeup(self._clock())
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(_first(self._wake, stop), delay)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._resign()

    async def _step(self) -> None:
        e = self.election
        now = self._clock()
        action = e.next_action(now)
        try:
            if action is Action.CREATE:
                self._since = time.time()
                sent = self._clock()
                rev = await self._bucket.create(LEADER_KEY, self._value(), ttl_s=e.timing.lease_ttl_s)
                if rev is None:
                    e.create_lost(self._clock())
                else:
                    e.created(rev, sent)
                    self._leader = LeaderInfo(e.me, socket.gethostname(), os.getpid(), rev)
            elif action is Action.RENEW:
                sent = self._clock()
                rev = await self._bucket.update(LEADER_KEY, self._value(), last=e.revision,
                                                ttl_s=e.timing.lease_ttl_s)
                if rev is None:
                    e.renew_conflict(self._clock())
                else:
                    e.renewed(rev, sent)
            elif action is Action.CHECK:
                entry = await self._bucket.get(LEADER_KEY)
                if entry is None:
                    e.vacated(self._clock())
                    self._leader = None
                else:
                    self._seen(entry.value, entry.revision)
        except KvError as exc:
            log.log(logging.DEBUG if self._failing else logging.WARNING,
                    "election: %s failed: %s (retrying)", action, exc)
            self._failing = True
            e.failed(self._clock())
            await asyncio.sleep(0.1)  # the store is unreachable: not a busy loop while it is
            return
        if self._failing:
            log.info("election: the store answers again")
            self._failing = False

    def _seen(self, value: bytes, revision: int) -> None:
        try:
            record = LeaderRecord.from_bytes(value)
        except RecordError as exc:
            log.error("election: %s; treating the lease as held by an unknown coordinator", exc)
            record = LeaderRecord(coordinator_id="?", hostname="?", pid=0, since=0.0)
        term = record.term or revision
        if self.election.observed(record.coordinator_id, term, revision, self._clock()):
            self._leader = LeaderInfo(record.coordinator_id, record.hostname, record.pid, term)

    async def _watch(self) -> None:
        while True:
            try:
                async for entry in self._bucket.watch(LEADER_KEY):
                    if entry is None:
                        continue
                    if entry.deleted:
                        if self.election.vacated(self._clock(), entry.revision):
                            self._leader = None
                    else:
                        self._seen(entry.value, entry.revision)
                    self._wake.set()
            except KvError as exc:
                log.warning("election: watch failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _resign(self) -> None:
        e = self.election
        held, revision = e.role is not Role.FOLLOWER, e.revision
        e.resign()
        if held:
            with contextlib.suppress(KvError):
                # only our own lease: if it changed hands meanwhile, the compare fails and nothing is deleted
                await asyncio.wait_for(self._bucket.delete(LEADER_KEY, last=revision), 2.0)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(ev.wait()) for ev in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
