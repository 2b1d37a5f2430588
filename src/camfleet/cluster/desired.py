"""Where an agent's cameras come from: its key in ``camfleet_desired``, checked, applied, answered.

:class:`KvDesiredState` watches ``camfleet_desired/<node id>``
(:class:`~camfleet.cluster.registry.DesiredNode`, written only by the leader
coordinator). Each new revision is laid over the agent's base configuration
(its ``--config``: storage, detectors, models, pipelines...; never that file's
own cameras), checked the way ``camfleet run`` checks a file (the loader with
every element's settings, then the models and the shared memory the cameras
need: the "self check"), and applied through
:meth:`~camfleet.runtime.control.NodeControl.apply_config` (only the cameras
that changed restart). The answer goes to ``camfleet_applied/<node id>``
(:class:`~camfleet.cluster.registry.AppliedReport`): the revision applied, or
the revision refused with the errors (naming the camera and the key) while
the node keeps running the previous one.

A revision refused for a cause that may pass (a model file not copied yet,
``/dev/shm`` too full, the node failing to start a camera) is tried again,
after 5 s and then less and less often (at most once a minute), until it
applies or a newer revision replaces it; one refused for its settings is not.

A revision not newer than one already considered, or written in a leader
term older than one already seen, is ignored (a deposed leader's late write).
A deleted key means "run nothing". :meth:`KvDesiredState.token_of` gives the
fencing token of each camera of the revision the node runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from nats.js import JetStreamContext

from camfleet.config import Config, ConfigError, ElementCatalog
from camfleet.config.sources import with_cameras
from camfleet.redact import mask_text
from camfleet.runtime.checks import check_models, check_shm
from camfleet.runtime.control import NodeControl

from .kv import Bucket, Entry, KvError, open_bucket
from .registry import APPLIED_BUCKET, DESIRED_BUCKET, AppliedReport, DesiredNode, RecordError

__all__ = ["DesiredStateSource", "KvDesiredState", "StaticDesiredState", "fleet_base"]

log = logging.getLogger("camfleet.cluster.desired")

RETRY_S = 1.0
"""Seconds between two attempts to watch the desired key after a failure."""
RETRY_REFUSED_S = (5.0, 60.0)
"""Seconds before the first new try of a revision refused for a passing cause, and the most between tries."""


class DesiredStateSource(Protocol):
    """Drives a node's cameras from somewhere else; the agent calls it as the lease comes and goes."""

    async def attach(self, js: JetStreamContext, replicas: int, fenced: Callable[[], bool]) -> None:
        """Open what it reads and writes (raises KvError); ``fenced()``: the node holds no lease now."""
        ...

    async def run(self, node: NodeControl, stop: asyncio.Event) -> None:
        """Apply each new desired configuration to ``node`` (through ``apply_config``) until ``stop``."""
        ...

    async def resync(self, node: NodeControl) -> None:
        """Read the desired configuration as it is now and make ``node`` run exactly that (a rejoin)."""
        ...

    async def report_fenced(self, why: str) -> None:
        """Say that the node stopped its cameras because its lease lapsed (``why``)."""
        ...

    async def flush(self) -> None:
        """Write the last report again if it could not be written (the store was away)."""
        ...

    def token_of(self, camera: str) -> int | None:
        """The fencing token ``camera`` runs under on this node (None: not placed here)."""
        ...


class StaticDesiredState:
    """The configuration the node was started with, never changed (a node embedded without the fleet)."""

    async def attach(self, js: JetStreamContext, replicas: int, fenced: Callable[[], bool]) -> None:
        """Nothing to open."""

    async def run(self, node: NodeControl, stop: asyncio.Event) -> None:
        """Nothing to apply: wait for ``stop``."""
        await stop.wait()

    async def resync(self, node: NodeControl) -> None:
        """Nothing to read."""

    async def report_fenced(self, why: str) -> None:
        """Nowhere to report to."""

    async def flush(self) -> None:
        """Nothing pending."""

    def token_of(self, camera: str) -> int | None:
        """No fleet, no token."""
        return None


def fleet_base(config: Config, data_dir: str | None = None) -> Config:
    """``config`` without cameras (and with ``data_dir`` when given): what a fleet agent lays cameras over.

    Raises:
        ConfigError: the configuration no longer loads (it did when it was read, so hardly ever).
    """
    if data_dir is not None:
        config = with_cameras(config.model_copy(update={"data_dir": data_dir}), {})
    return with_cameras(config, {})


class KvDesiredState:
    """Follows ``camfleet_desired/<node_id>`` over ``base`` and answers in ``camfleet_applied/<node_id>``.

    ``elements`` checks the element settings (the pipeline registry's
    catalogue); ``preflight`` adds the model-file and shared-memory checks.
    """

    def __init__(self, node_id: str, base: Config, *, elements: ElementCatalog | None = None,
                 preflight: bool = True) -> None:
        self.node_id = node_id
        self.base = base
        self.elements = elements
        self.preflight = preflight
        self.revision = 0
        """The desired revision the node runs (0: none yet)."""
        self.term = 0
        """The highest leader term seen in a desired state."""
        self._seen = 0  # the highest revision considered, applied or refused
        self._refusal: tuple[int, list[str]] = (0, [])  # the last refused revision and why, until one applies
        self._retry: DesiredNode | None = None  # refused for a cause that may pass: tried again
        self._retry_in = RETRY_REFUSED_S[0]  # seconds until that next try
        self._tokens: dict[str, int] = {}  # replaced whole, never mutated: read from other threads
        self._desired: Bucket | None = None
        self._applied: Bucket | None = None
        self._fenced: Callable[[], bool] = lambda: False
        self._pending: AppliedReport | None = None
        self._lock: asyncio.Lock | None = None
        self._follower: asyncio.Task[None] | None = None
        self._following: tuple[NodeControl, asyncio.Event] | None = None

    def token_of(self, camera: str) -> int | None:
        """The fencing token of ``camera`` in the revision the node runs (None: not placed on this node).

        Kept while the node is fenced: events journalled before the lease lapsed
        still leave with the token they were produced under (the central store
        judges whether it is stale). Safe from any thread.
        """
        return self._tokens.get(camera)

    async def attach(self, js: JetStreamContext, replicas: int, fenced: Callable[[], bool]) -> None:
        """Open (or create) both buckets; raises KvError while JetStream is away."""
        self._desired = await open_bucket(js, DESIRED_BUCKET, replicas=replicas, markers_ttl_s=None)
        self._applied = await open_bucket(js, APPLIED_BUCKET, replicas=replicas, markers_ttl_s=None)
        self._fenced = fenced
        self._lock = self._lock or asyncio.Lock()

    async def run(self, node: NodeControl, stop: asyncio.Event) -> None:
        """Watch the key and apply each new revision until ``stop`` (the watch follows reconnects)."""
        self._following = (node, stop)
        self._rewatch()
        try:
            await stop.wait()
        finally:
            self._following = None
            await self._unwatch()

    def _rewatch(self) -> None:
        """(Re)start the watch: after a lapse it may be stale for seconds (an ordered consumer's reset)."""
        if self._following is None:
            return
        if self._follower is not None:
            self._follower.cancel()
        self._follower = asyncio.create_task(self._follow(*self._following), name="desired-watch")

    async def _unwatch(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self, node: NodeControl, stop: asyncio.Event) -> None:
        assert self._desired is not None, "attach() first"
        # Each revision is the node's whole state: while one applies (starting and stopping
        # processes takes a second or more), newer ones replace each other in one slot and only the
        # newest is applied next. Applying each in turn fell ever further behind a burst of edits.
        newest: list[Entry] = []
        ready = asyncio.Event()
        applier = asyncio.create_task(self._apply_newest(node, newest, ready), name="desired-apply")
        try:
            while not stop.is_set():
                try:
                    async for entry in self._desired.watch(self.node_id):
                        if entry is not None:  # None: the end of the initial values
                            newest[:] = [entry]
                            ready.set()
                except KvError as exc:
                    log.warning("desired state: %s (watching again in %.0f s)", exc, RETRY_S)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)
        finally:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier

    async def _apply_newest(self, node: NodeControl, newest: list[Entry], ready: asyncio.Event) -> None:
        """Apply the entry in ``newest`` each time ``ready`` is set, until cancelled."""
        while True:
            if self._retry is None:
                await ready.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ready.wait(), self._retry_in)
                if not ready.is_set():  # nothing new came: the refused revision's turn (shielded as below)
                    await asyncio.shield(self._try_again(node))
                    continue
            ready.clear()
            if newest:
                entry = newest.pop()
                # shielded: a re-watch must not cut an apply in half (the node would run a
                # revision this object does not know it runs)
                await asyncio.shield(self._consider(node, entry))

    async def resync(self, node: NodeControl) -> None:
        """Read the key now, run what it says, and report (raises KvError when it cannot be read)."""
        assert self._desired is not None, "attach() first"
        self._rewatch()
        await self._consider(node, await self._desired.get(self.node_id), answer=True)

    async def report_fenced(self, why: str) -> None:
        """Report the node fenced (no camera running) with the revision it was running."""
        await self._report(AppliedReport(self.node_id, self.revision, errors=[why], fenced=True, cameras=[],
                                         at=time.time()))

    async def flush(self) -> None:
        """Write a report that could not be written before."""
        if self._pending is not None:
            await self._report(self._pending)

    # ------------------------------------------------------------------ one revision

    async def _consider(self, node: NodeControl, entry: Entry | None, *, answer: bool = False) -> None:
        """Apply ``entry`` if it is newer; ``answer``: report even when nothing changes (a rejoin)."""
        assert self._lock is not None
        async with self._lock:
            if entry is None or entry.deleted:
                self._retry = None  # "run nothing" replaces a revision waiting to be tried again
                await self._apply(node, None)
                return
            try:
                desired = DesiredNode.from_bytes(entry.value, self.node_id)
            except RecordError as exc:
                self._retry = None  # the key no longer holds the revision that waits
                log.error("desired state refused: %s", exc)
                await self._answer(refused=0, errors=[str(exc)], node=node)
                return
            if desired.node_id != self.node_id:
                self._retry = None
                await self._answer(refused=desired.revision, node=node, errors=[
                    f"{DESIRED_BUCKET}/{self.node_id}: written for node {desired.node_id!r}"])
                return
            if desired.term < self.term or desired.revision <= self._seen:
                if desired.term < self.term:
                    log.warning("desired revision %d ignored: written in leader term %d, older than term %d",
                                desired.revision, desired.term, self.term)
                if answer:
                    await self._answer(node=node)
                return
            self._seen, self.term = desired.revision, desired.term
            self._retry = None
            await self._apply_guarded(node, desired)

    async def _try_again(self, node: NodeControl) -> None:
        """Apply again the revision refused for a passing cause, unless a newer one came meanwhile."""
        assert self._lock is not None
        async with self._lock:
            desired = self._retry
            if desired is None or desired.revision != self._seen:
                return
            self._retry_in = min(2 * self._retry_in, RETRY_REFUSED_S[1])
            log.info("desired revision %d: trying it again", desired.revision)
            await self._apply_guarded(node, desired)

    async def _apply_guarded(self, node: NodeControl, desired: DesiredNode) -> None:
        try:
            await self._apply(node, desired)
        except Exception as exc:  # a bug must not end the watch (or the heartbeats of a rejoin)
            self._retry = None
            log.exception("desired revision %d: applying it failed", desired.revision)
            await self._answer(refused=desired.revision, errors=[f"applying failed: {exc!r}"], node=node)

    async def _apply(self, node: NodeControl, desired: DesiredNode | None) -> None:
        cameras = desired.cameras if desired is not None else {}
        revision = desired.revision if desired is not None else self.revision
        if desired is None and not node.current_config().cameras:
            await self._answer(node=node)  # nothing placed here, nothing running: say so
            return
        merged, errors = await asyncio.to_thread(self._check, {n: c.settings for n, c in cameras.items()})
        if merged is None or errors:
            # settings that do not load stay wrong; a missing model file or a full /dev/shm may pass
            self._refused(desired if merged is not None else None)
            log.error("desired revision %d refused (the node keeps revision %d)%s: %s", revision,
                      self.revision, self._when_again(), "; ".join(errors))
            await self._answer(refused=revision, errors=errors, node=node)
            return
        before = self._tokens
        self._tokens = {**before, **{n: c.token for n, c in cameras.items()}}  # events of a new camera
        result = await asyncio.to_thread(node.apply_config, merged)
        if not result.ok:
            self._tokens = before
            self._refused(desired)  # e.g. a camera's rings could not be created: may pass
            errors = [mask_text(e) for e in result.errors]
            log.error("desired revision %d refused by the node (it keeps revision %d)%s: %s", revision,
                      self.revision, self._when_again(), "; ".join(errors))
            await self._answer(refused=revision, errors=errors, node=node)
            return
        self._tokens = {n: c.token for n, c in cameras.items()}
        self.revision = revision
        self._refusal = (0, [])
        self._retry = None
        log.info("desired revision %d (term %d) applied: %d camera(s); added %s, removed %s, restarted %s",
                 revision, self.term, len(cameras), result.added, result.removed, result.restarted)
        await self._answer(errors=[mask_text(e) for e in result.errors], node=node)

    def _refused(self, desired: DesiredNode | None) -> None:
        """Remember ``desired`` to try again (None: its refusal is final; so is a deleted key's)."""
        if desired is None or self._retry is None or self._retry.revision != desired.revision:
            self._retry_in = RETRY_REFUSED_S[0]  # a first refusal: the first delay
        self._retry = desired

    def _when_again(self) -> str:
        return f"; trying it again in {self._retry_in:.0f} s" if self._retry is not None else ""

    def _check(self, cameras: dict[str, dict[str, object]]) -> tuple[Config | None, list[str]]:
        """The base with ``cameras``, validated like a file ``camfleet run`` reads; the errors if not."""
        try:
            merged = with_cameras(self.base, dict(cameras), elements=self.elements)
        except ConfigError as exc:
            # lines and columns would point into YAML generated here: the path names camera and key
            return None, [mask_text(str(dataclasses.replace(issue, line=None, column=None)))
                          for issue in exc.issues]
        if not self.preflight:
            return merged, []
        return merged, [mask_text(str(p)) for p in check_models(merged) + check_shm(merged)]

    async def _answer(self, *, node: NodeControl, refused: int | None = None,
                      errors: list[str] | None = None) -> None:
        """Report the revision running; a refusal is repeated in later reports until a revision applies."""
        if refused is not None:
            self._refusal = (refused, list(errors or []))
            errors = []
        refused_rev, why = self._refusal
        await self._report(AppliedReport(self.node_id, self.revision, refused=refused_rev,
                                         errors=[*why, *(errors or [])], fenced=self._fenced(),
                                         cameras=sorted(node.current_config().cameras), at=time.time()))

    async def _report(self, report: AppliedReport) -> None:
        assert self._applied is not None, "attach() first"
        self._pending = report
        try:
            await self._applied.put(self.node_id, report.to_bytes())
        except KvError as exc:
            log.warning("applied report not written (again after the next heartbeat): %s", exc)
            return
        if self._pending is report:
            self._pending = None
