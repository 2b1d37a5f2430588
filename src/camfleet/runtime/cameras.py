"""Camera processes: what each is started with, started from a forkserver, beating in the node's table.

:class:`CameraProcesses` owns the heartbeat table, the forkserver context
(its preload list comes from the pipeline registry) and the pipelines'
control queues; it turns (camera, kind) into a supervised process with a
:class:`~camfleet.runtime.children.ChildSpec` and hands it to the node's
:class:`~camfleet.runtime.supervisor.Supervisor`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from camfleet.config import Config
from camfleet.pipeline.registry import builtin_modules
from camfleet.procutil import sigint_blocked

from . import heartbeat as hb
from .children import ChildSpec, run_child
from .detectors import DetectorPool
from .health import RestartPolicy
from .kinds import CameraKind
from .protocols import ConfigOutbox, LogRouting
from .supervisor import Supervised, Supervisor


def forkserver_context() -> ForkServerContext:
    """The forkserver camfleet's processes start from, its preload list set (started by ``open()``).

    Camera processes and detectors fork from a server that imported the elements: fast
    restarts, no threads inherited, and the modules' pages shared by every process.
    """
    ctx = mp.get_context("forkserver")
    # the built-in elements take seconds to import (trackers, OpenCV): once, in the forkserver,
    # so that a restarted pipeline is running again in well under a second; forkmain first: its
    # children do not import the node's __main__ again; forkfreeze last: it keeps the children's
    # garbage collector off the pages they share with the forkserver
    ctx.set_forkserver_preload(["camfleet.runtime.forkmain", "camfleet.runtime.children",
                                *builtin_modules(), "camfleet.runtime.forkfreeze"])
    return ctx


def process_name(camera: str, kind: CameraKind) -> str:
    """The name of ``camera``'s process of ``kind`` (``cam1/pipeline``), as in status and logs."""
    return f"{camera}/{kind.name}"


class CameraProcesses:
    """Starts and removes camera processes; not thread-safe (the node locks)."""

    def __init__(self, supervisor: Supervisor, detectors: DetectorPool, *, node_key: str,
                 log_router: LogRouting | None = None, lease: str | None = None) -> None:
        self._supervisor = supervisor
        self._lease = lease  # the fleet lease file every camera process stops by (None: no fleet)
        self._detectors = detectors
        self._node_key = node_key
        self._log_router = log_router
        self.ctx = forkserver_context()
        self._table: hb.HeartbeatTable | None = None
        self._specs: dict[str, ChildSpec] = {}
        self._controls: dict[str, ConfigOutbox] = {}

    def open(self) -> None:
        """Create the node's heartbeat table and start the forkserver (before the first :meth:`add`)."""
        self._table = hb.HeartbeatTable(self._node_key)
        # The forkserver preloads for seconds before it ignores SIGINT itself: started with SIGINT
        # ignored (inherited through exec, and by every camera process it forks), a Ctrl-C meanwhile
        # cannot kill it and fail every camera process with exit code 255. Its start returns at once.
        with sigint_blocked(ignore=True):
            forkserver.ensure_running()

    def add(self, config: Config, camera: str, kind: CameraKind, outbox: str | None) -> Supervised:
        """Start ``camera``'s process of ``kind`` under ``config``; it journals into ``outbox`` (a path)."""
        assert self._table is not None, "open() first"
        name = process_name(camera, kind)
        control = None
        if kind.takes_updates:
            control = self._controls[name] = self.ctx.Queue()
        slot = self._table.allocate()
        spec = ChildSpec(
            camera=camera, kind=kind, config=config, health_path=str(self._table.path), slot=slot,
            parent_pid=os.getpid(), outbox=outbox, control=control,
            log_address=self._log_router.address if self._log_router is not None else None,
            detectors=self._detectors.assign(config, camera) if kind.uses_detectors else {},
            lease=self._lease,
        )
        self._specs[name] = spec

        def launch() -> BaseProcess:
            return self.ctx.Process(target=run_child, args=(spec,), name=f"camfleet-{name}")

        entry = Supervised(name=name, kind=kind, camera=camera, launch=launch, beats=self._table.slot(slot),
                           policy=RestartPolicy(config.runtime))
        self._supervisor.add(entry)
        return entry

    def find(self, camera: str, kind: CameraKind) -> Supervised | None:
        """``camera``'s supervised process of ``kind``, if any."""
        return self._supervisor.get(process_name(camera, kind))

    def remove(self, entries: Iterable[Supervised]) -> None:
        """Stop ``entries`` for good and free their slots and control queues."""
        entries = list(entries)
        self._supervisor.remove(entries)
        for p in entries:
            self._specs.pop(p.name, None)
            self._controls.pop(p.name, None)

    def retarget(self, config: Config, updated: Iterable[str]) -> None:
        """Restart processes with ``config`` from now on; send it to the running ones of ``updated``.

        (``updated``: camera names whose live settings changed.)
        """
        updated = set(updated)
        for name, spec in self._specs.items():
            spec.config = config  # restarts after a crash use the configuration in force
            control = self._controls.get(name)
            if control is not None and spec.camera in updated:
                control.put(config)

    def close(self) -> None:
        """Forget every process (after the supervisor stopped them) and remove the heartbeat table."""
        self._specs.clear()
        self._controls.clear()
        if self._table is not None:
            self._table.close()
            self._table = None
