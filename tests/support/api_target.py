"""The API tests' target: the same cases against a single node (``camfleet run``) and the fleet's coordinator.

A test module parametrizes its ``rt`` fixture with :func:`generate_targets`
(``pytest_generate_tests = generate_targets``, or :func:`targets` naming the
module's fixtures built on ``rt``): every test that takes one of them runs
against ``node`` and ``fleet``, except

* ``@pytest.mark.node_only(reason=...)``: the case exercises something only a
  node has (its in-process objects, its own files); the reason says what. It
  is not collected for the fleet at all (nothing silently skipped).
* ``@pytest.mark.fleet_xfail(reason=...)``: expected to fail on the fleet for
  now (a coordinator route not there yet); ``xfail(strict=False)`` there only.

Tests that reach ``rt`` only through an autouse fixture run once (``node``).

:class:`Target` gives both the same things: URL, tokens, clients, the store
holding tokens and cameras, and the camera node's own store, directories and
segment directory (on the fleet: those of the agent that runs ``cam1``).
:class:`ApiFleet` is the fleet (:class:`~tests.support.fleet.FleetHarness`:
3 NATS servers, 2 coordinators serving the API, 3 agents with the API tests'
node settings), started once per session and shared by every fleet case;
requests go to the coordinator that does NOT lead, so every write crosses to
the leader.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import yaml
from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from camfleet.config import ApiSettings, load_config
from camfleet.store import EventRecord, Store

from .api_node import Running, camera_yaml, node_yaml
from .fleet import FleetHarness, wait_for

NODE_ONLY = "node_only"
FLEET_XFAIL = "fleet_xfail"
"""The reason of the fleet xfails for routes another change adds to the coordinator."""
CAMERA = "cam1"


def targets(*fixtures: str) -> Callable[[pytest.Metafunc], None]:
    """A ``pytest_generate_tests``: ``rt`` over node and fleet for tests taking ``rt`` or ``fixtures``."""

    def generate(metafunc: pytest.Metafunc) -> None:
        _generate(metafunc, {"rt", *fixtures})

    return generate


def generate_targets(metafunc: pytest.Metafunc) -> None:
    """``pytest_generate_tests`` of an API test module: ``rt`` over node and fleet (see the module)."""
    _generate(metafunc, {"rt"})


def _generate(metafunc: pytest.Metafunc, takes: set[str]) -> None:
    if "rt" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    only = definition.get_closest_marker(NODE_ONLY)
    xfail = definition.get_closest_marker(FLEET_XFAIL)
    for marker in (only, xfail):
        if marker is not None and not (marker.kwargs.get("reason") or marker.args):
            raise pytest.UsageError(f"{definition.nodeid}: @{marker.name} needs a reason")
    params: list[Any] = ["node"]
    if only is None and takes & set(inspect.signature(metafunc.function).parameters):
        if xfail is None:
            params.append("fleet")
        else:
            reason = xfail.kwargs.get("reason") or xfail.args[0]
            params.append(pytest.param("fleet", marks=pytest.mark.xfail(reason=reason, strict=False)))
    metafunc.parametrize("rt", params, indirect=True, scope="module")


@dataclass
class Target:
    """What an API case needs of the server under test, alike for a node and the fleet's coordinator.

    ``store`` holds tokens and cameras (the node's :class:`Store` or the fleet's
    ``FleetStore``: their token calls are the same); ``media`` is the database of
    the node that runs ``cam1`` (events, segments); ``data_dir``,
    ``recordings_path`` and ``shm`` are that node's.
    """

    kind: Literal["node", "fleet"]
    url: str
    admin: str
    viewer: str
    store: Any
    media: Store
    data_dir: Path
    recordings_path: Path
    shm: Path
    ready_checks: dict[str, bool]
    running: Running | None = None
    fleet: ApiFleet | None = None

    # -- the node's own objects (node-only cases) ----------------------------------------------------
    @property
    def node(self) -> Any:
        """The in-process node (node target only)."""
        assert self.running is not None, "a node-only case ran against the fleet"
        return self.running.node

    @property
    def server(self) -> Any:
        """The in-process API server (node target only)."""
        assert self.running is not None, "a node-only case ran against the fleet"
        return self.running.server

    @property
    def config(self) -> Any:
        """The node's configuration (node target only)."""
        assert self.running is not None, "a node-only case ran against the fleet"
        return self.running.config

    # -- clients --------------------------------------------------------------------------------------
    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client of the server under test (with ``token`` as the bearer)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15, **kwargs)

    def ws(self, token: str | None, **kwargs: Any) -> ClientConnection:
        """A WebSocket on ``/api/ws`` (with ``?token=`` when given)."""
        url = self.url.replace("http://", "ws://") + "/api/ws"
        if token:
            url += f"?token={token}"
        return connect(url, open_timeout=10, close_timeout=2, **kwargs)

    def app(self, settings: ApiSettings) -> FastAPI:
        """Another app in front of the same node (or fleet) with ``settings``."""
        if self.running is not None:
            from camfleet.api import create_app

            r = self.running
            return create_app(r.node, r.store, settings, data_dir=r.data_dir,
                              recordings_dir=r.config.recordings_path)
        from camfleet.api.fleet import create_fleet_app
        from camfleet.cluster.connection import NatsOptions

        assert self.fleet is not None
        return create_fleet_app(self.store, NatsOptions(tuple(self.fleet.harness.nats.urls)), settings,
                                coordinator_id="c-test")

    # -- cameras ---------------------------------------------------------------------------------------
    def staged(self) -> dict[str, dict[str, Any] | None]:
        """The staged edits as stored: camera -> its settings (None: a removal)."""
        if self.running is not None:
            return dict(self.store.staged_cameras())
        return {n: None if c is None else c.settings for n, c in self.store.staged().items()}

    def stage(self, name: str, settings: dict[str, Any]) -> None:
        """Stage ``settings`` straight into the store, unchecked (an edit that went stale)."""
        if self.running is not None:
            self.store.stage_camera(name, settings)
        else:
            from camfleet.fleetstore.store import FleetCamera

            self.store.stage({name: FleetCamera(name=name, settings=settings, placement={})})

    def applied(self) -> set[str]:
        """The cameras in force (node: applied through the API on top of the file; fleet: all of them)."""
        if self.running is not None:
            return set(self.running.node.current_config().cameras)
        return set(self.store.cameras())

    def stored(self) -> set[str]:
        """The cameras the API applied, as stored (what a restart runs on top of a node's file)."""
        if self.running is not None:
            return set(self.store.applied_cameras())
        return set(self.store.cameras()) - {CAMERA}  # cam1 came from the fixture as the node's from its file

    def after_restart(self) -> set[str]:
        """The cameras a restart would run: the node's file plus the store's; the fleet's database."""
        if self.running is not None:
            from camfleet.config import overlay_cameras

            return set(overlay_cameras(self.running.config, self.store).cameras)
        return set(self.store.cameras())

    def add_event(self, event: EventRecord) -> None:
        """An event as if ``cam1``'s node had made it (on the fleet: also sent to the fleet's database)."""
        self.media.upsert_event(event)
        if self.fleet is not None:
            from camfleet.fleetstore.events import Incoming, store_batch
            from camfleet.vocabulary import EventMessage

            seq = 1_000_000 + secrets.randbelow(1_000_000)
            store_batch(self.store.engine, [Incoming(self.fleet.node, seq, event.camera,
                                                     EventMessage("end", event), None, time.time())])

    def check_relayed(self, response: httpx.Response) -> None:
        """On the fleet: ``response`` (media of ``cam1``) came from its agent, not from the coordinator."""
        if self.fleet is not None:
            assert response.headers.get("x-camfleet-node") == self.fleet.node, dict(response.headers)

    def pid(self, camera: str, kind: str) -> int | None:
        """The pid of ``camera``'s ``kind`` process, from ``/api/status``."""
        with self.client(self.viewer) as c:
            proc = c.get("/api/status").json()["cameras"][camera]["processes"].get(kind) or {}
        pid = proc.get("pid")
        return int(pid) if pid else None


def node_target(r: Running) -> Target:
    """The target of a node in this process."""
    return Target("node", r.url, r.admin, r.viewer, r.store, r.store, r.data_dir, r.config.recordings_path,
                  r.shm, {"node": True, "store": True}, running=r)


def _agent_yaml() -> str:
    """The agents' (and coordinators' base) settings as a :class:`FleetHarness` template (``{data}``)."""
    text = node_yaml("@DATA@", "  {}")
    return text.replace("{", "{{").replace("}", "}}").replace("@DATA@", "{data}")


@dataclass
class ApiFleet:
    """The session's fleet for the API cases: harness, fleet database, tokens, ``cam1`` placed and live."""

    harness: FleetHarness
    url: str
    node: str
    admin: str
    viewer: str
    store: Any
    media: Store | None = None
    recordings_path: Path = Path()

    def target(self) -> Target:
        """A :class:`Target` of the coordinator with exactly ``cam1`` in force, decoding, nothing staged.

        An earlier module (the fuzzing) may have left edits, cameras, or removed ``cam1``: put back.
        """
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin}"},
                          timeout=30) as c:
            assert c.post("/api/changes/discard").status_code == 200
            if set(self.store.cameras()) != {CAMERA} or self.media is None:
                self._place(c)
        assert self.media is not None
        agent = self.harness.agent(self.node)
        return Target("fleet", self.url, self.admin, self.viewer, self.store, self.media, agent.data,
                      self.recordings_path, agent.shm, {"nats": True, "store": True}, fleet=self)

    def _place(self, c: httpx.Client) -> None:
        """Apply exactly ``cam1`` (recording) through the API; wait until it decodes on its node."""
        for name in set(self.store.cameras()) - {CAMERA}:
            assert c.delete(f"/api/cameras/{name}").status_code == 200
        camera = yaml.safe_load(camera_yaml(CAMERA, record=True))[CAMERA]
        put = c.put(f"/api/cameras/{CAMERA}", json=camera)
        assert put.status_code == 200, put.text
        applied = c.post("/api/apply")
        assert applied.status_code == 200, applied.text
        node = str(c.get(f"/api/cameras/{CAMERA}").json()["node"])

        def decoding() -> bool:
            cam = c.get("/api/status").json()["cameras"].get(CAMERA) or {}
            return cam.get("node") == node and (cam.get("decode_fps") or 0) > 0

        wait_for(f"{CAMERA} decoding on {node}", decoding, 90, 0.3)
        if node != self.node or self.media is None:
            if self.media is not None:
                self.media.close()
            agent = load_config(self.harness.agent(node).config)
            self.node, self.recordings_path = node, agent.recordings_path
            self.media = Store.open(agent.database_url, secret_key_path=agent.data_path / "secret.key")


@contextlib.contextmanager
def api_fleet(root: Path) -> Iterator[ApiFleet]:
    """Start the fleet and the tokens (``cam1`` is placed by :meth:`ApiFleet.target`); stop it all after."""
    from camfleet.fleetstore.store import FleetStore

    template = _agent_yaml()
    harness = FleetHarness(root, cameras=0, node_config=template, base_config=template, api=True)
    store: FleetStore | None = None
    fleet: ApiFleet | None = None
    try:
        harness.start(timeout=120)  # five Python processes starting at once on CI's two cores
        store = FleetStore(harness.db)
        admin, viewer = store.create_token("test-admin", "admin"), store.create_token("test-viewer", "viewer")
        urls = harness.api_urls()
        leader = str(harness.ctl("leader")["coordinator_id"])
        url = next(u for i, u in enumerate(urls) if harness.coordinator_id(i) != leader)
        fleet = ApiFleet(harness, url, "", admin, viewer, store)
        yield fleet
    finally:
        if fleet is not None and fleet.media is not None:
            fleet.media.close()
        if store is not None:
            store.close()
        harness.stop()
        for name in ("c1", "c2", "n1", "n2", "n3"):
            log = root / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-10:]
                print(f"--- {name}.log (tail)\n" + "\n".join(tail))


__all__ = ["FLEET_XFAIL", "NODE_ONLY", "ApiFleet", "Target", "api_fleet", "generate_targets",
           "node_target", "targets"]
