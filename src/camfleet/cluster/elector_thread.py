"""The coordinator's election on a thread of its own: its own event loop and its own NATS connection.

A leader's lease is renewed every ``renew_s`` and lapses ``lease_ttl_s`` after
the last renewal. On the coordinator's main event loop a renewal waits behind
whatever that loop is doing: a burst of a thousand agents registering and
beating, a scheduling pass over 20,000 cameras, a large control request. With
one such stall longer than the lease, the leader lost its leadership because
it was busy (measured: 1,000 simulated agents cost the leader its lease within
20 s). Here the renewals run on a separate thread with a separate connection,
so they wait for nothing the coordinator does; only Python's interpreter lock
is shared, which a busy thread yields every few milliseconds.

:meth:`ElectorThread.start` returns the :class:`~.elector.LeaderElector`, whose
``is_leader()``, ``term`` and ``leader()`` may be read from any thread; role
changes are handed to the main loop (``on_transition`` runs there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from .connection import NatsOptions, connect
from .election import Transition
from .elector import LeaderElector
from .kv import KvError, open_bucket
from .registry import LEADER_BUCKET, FleetTiming

__all__ = ["ElectorThread"]

log = logging.getLogger("camfleet.cluster.election")

STOP_WAIT_S = 5.0
"""How long a stop waits for the thread to give the lease up and close its connection (seconds)."""


class ElectorThread:
    """Runs the election for coordinator ``me`` on its own thread and NATS connection (see the module)."""

    def __init__(self, options: NatsOptions, me: str, timing: FleetTiming, replicas: int,
                 on_transition: Callable[[Transition], None]) -> None:
        self.options = options
        self.me = me
        self.timing = timing
        self.replicas = replicas
        self._on_transition = on_transition
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._elector: LeaderElector | None = None
        self._error: BaseException | None = None

    async def start(self, stop: asyncio.Event) -> LeaderElector | None:
        """Start the thread; its elector once connected with the lease bucket open (None: ``stop`` first).

        Raises ConnectionError when the thread cannot connect to NATS.
        """
        main = asyncio.get_running_loop()

        def handoff(change: Transition) -> None:
            # called on the election's thread: the coordinator's callbacks belong to its own loop
            with contextlib.suppress(RuntimeError):  # the main loop closed: nothing is listening
                main.call_soon_threadsafe(self._on_transition, change)

        self._thread = threading.Thread(target=self._main, args=(handoff,), name="camfleet-election",
                                        daemon=True)
        self._thread.start()
        while not self._started.is_set():
            if stop.is_set():
                await self.stop()  # the thread may still be opening the bucket: end it too
                return None
            await asyncio.to_thread(self._started.wait, 0.25)
        if self._error is not None:
            raise ConnectionError(str(self._error))
        return self._elector

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for ``stop``, then have the thread give the lease up and end (bounded)."""
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
        await self.stop()

    async def stop(self) -> None:
        """End the thread: it resigns (deletes the lease it holds) and closes its connection."""
        loop, event, thread = self._loop, self._stop, self._thread
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(event.set)
        if thread is not None:
            await asyncio.to_thread(thread.join, STOP_WAIT_S)
            if thread.is_alive():
                log.warning("election: the election thread did not end within %.0f s", STOP_WAIT_S)

    # ---------------------------------------------------------------- on the election's thread
    def _main(self, handoff: Callable[[Transition], None]) -> None:
        try:
            asyncio.run(self._run(handoff))
        except BaseException as exc:  # reported to start(): the thread must not end silently
            self._error = exc
            log.error("election thread stopped: %r", exc)
        finally:
            self._started.set()

    async def _run(self, handoff: Callable[[Transition], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        options = NatsOptions(self.options.urls, self.options.creds, self.options.ca_file,
                              name=f"camfleet-election-{self.me[:8]}")
        client = await connect(options)
        try:
            js = client.jetstream(timeout=2.0)
            delay = 0.25
            while True:
                try:
                    bucket = await open_bucket(js, LEADER_BUCKET, replicas=self.replicas)
                    break
                except KvError as exc:
                    log.warning("election: %s (again in %.1f s)", exc, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    return
                delay = min(2.0, delay * 2)
            self._elector = LeaderElector(bucket, self.me, self.timing, handoff)
            self._started.set()
            await self._elector.run(self._stop)
        finally:
            with contextlib.suppress(Exception):  # never hang a stop on a server that is away
                await asyncio.wait_for(client.close(), 2.0)
