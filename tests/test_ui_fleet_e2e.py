"""The web UI served by a coordinator, in real headless Chromium: the fleet's nodes, grid, placement, events.

A real ``camfleet coordinator --api`` on a real NATS server, two fake agents
(plain NATS clients: :mod:`tests.support.fake_agents`). Checked: the UI finds
the fleet (a Nodes tab); the Nodes page lists both nodes with their capacity
bars, version and heartbeat; a camera added in the editor shows where apply
placed it; each grid tile names its node and says why it has no picture
(media answers 503 until the coordinator proxies it); draining a node changes
its state in the page and moves the camera's tile to the other node; events
from both nodes show their node; a viewer gets no buttons (and the page fits a
phone); with no leader the page shows what the database recorded, actions
disabled, and keeps it (saying why) when that database fails. Screenshots go
to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from playwright.sync_api import Page, expect

from camfleet.api.fleet import create_fleet_app
from camfleet.api.server import ApiServer
from camfleet.cluster.connection import NatsOptions
from camfleet.config import ApiSettings
from camfleet.fleetstore.events import Incoming, store_batch
from camfleet.fleetstore.store import FleetStore
from camfleet.vocabulary import Event, EventMessage
from camfleet_testing.nats import NatsHarness
from tests.support.browser import ARTIFACTS, chromium_page
from tests.support.fake_agents import FakeAgent
from tests.support.fleet import spawn_cli, stop_process, wait_for
from tests.support.loop_thread import LoopThread

pytestmark = pytest.mark.e2e
expect.set_options(timeout=20_000)  # a loaded 2-core CI machine: assertions wait up to 20 s

_URL_RE = re.compile(r"API on (http://\S+)")


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium_page() as pg:
        yield pg


def _api_url(log: Path) -> str | None:
    m = _URL_RE.search(log.read_text()) if log.exists() else None
    return m.group(1) if m else None


def test_fleet_ui_nodes_grid_placement_drain_and_events(nats1: NatsHarness, tmp_path: Path,
                                                       page: Page) -> None:
    _without_a_leader(page, nats1, tmp_path)
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = FleetStore(db)
    admin = store.create_token("ops", "admin")
    log = tmp_path / "coordinator.log"
    proc = spawn_cli(["coordinator", "--nats", nats1.url, "--data-dir", str(tmp_path / "c1"), "--db", db,
                      "--api", "127.0.0.1:0"], log)
    loop = LoopThread()
    client = loop.run(nats.connect(nats1.url))
    # capacities small enough that one camera shows on the bars (pixels/s decoded, inferences/s)
    agents = [FakeAgent(client, f"node-{c}", decode_pps=2e7, infer_ps=20.0) for c in "ab"]
    try:
        for agent in agents:
            loop.run(agent.start())
        url = wait_for("the coordinator's API", lambda: _api_url(log), 30)
        a = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=url, timeout=15, headers=a) as http:
            wait_for("a leader that sees both nodes", lambda: http.get("/api/fleet/nodes").json()["source"]
                     == "leader" and len(http.get("/api/fleet/nodes").json()["nodes"]) == 2, 30)
            _scenario(page, url, admin, http, store)
    finally:
        for agent in agents:
            loop.run(agent.die())
        loop.run(client.close())
        loop.close()
        stop_process(proc)
        store.close()
        print("--- coordinator log (tail)\n" + "\n".join(log.read_text().splitlines()[-15:]))


def _without_a_leader(page: Page, nats1: NatsHarness, tmp_path: Path) -> None:
    """No coordinator leads (an in-process API, its own database): the nodes last recorded, no actions."""
    store = FleetStore(f"sqlite:///{tmp_path / 'alone.db'}")
    admin = store.create_token("ops", "admin")
    store.update_node("node-z", record={"hostname": "host-z", "labels": {}, "version": "0.9",
                                        "capacity": {"decode_pixels_per_s": 5e7}},
                      state="alive", status_at=time.time() - 60)
    app = create_fleet_app(store, NatsOptions((nats1.url,)), ApiSettings(), coordinator_id="c-alone")
    alone = page.context.new_page()
    errors: list[str] = []
    alone.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with ApiServer(app) as server:
            alone.add_init_script(f"localStorage.setItem('camfleet_token', {admin!r})")
            alone.goto(f"{server.url}/#nodes")
            card = alone.locator('.node-card[data-node="node-z"]')
            expect(card).to_be_visible()
            expect(alone.locator("#nodes-source")).to_contain_text("no leader coordinator answers")
            expect(card.locator(".node-facts")).to_contain_text("version 0.9 · last status")
            expect(card.locator(".bar-value").first).to_have_text("unknown")
            expect(card.locator("button.node-drain")).to_be_disabled()
            # the database fails under it: the page keeps the list and says why it is not fresh
            with store.engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE fleet_nodes")
            stale = "not refreshed: the fleet database is unavailable"
            expect(alone.locator("#nodes-source")).to_contain_text(stale)
            expect(card).to_be_visible()
            alone.close()
        assert errors == [], errors
    finally:
        store.close()


def _scenario(page: Page, url: str, admin: str, http: httpx.Client, store: FleetStore) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.add_init_script(f"localStorage.setItem('camfleet_token', {admin!r})")
    page.goto(f"{url}/#cameras")
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#nodes-tab")).to_be_visible()  # the UI found the fleet

    # a camera added in the editor: apply says where the leader placed it
    page.click("#camera-new")
    page.fill("#cam-name", "door")
    page.fill("#cam-url", "rtsp://10.0.0.7/door")
    page.click("#cam-save")
    expect(page.locator("#changes")).to_contain_text("add door")
    page.click("#apply")
    result = page.locator("#apply-result")
    expect(result).to_contain_text(re.compile(r"placed door on node-[ab]"))
    placed = re.search(r"placed door on (node-[ab])", result.text_content() or "")
    assert placed is not None
    node = placed.group(1)
    other = "node-b" if node == "node-a" else "node-a"
    expect(page.locator('#camera-list li[data-camera="door"] .node')).to_have_text(f"on {node}")

    # the Nodes page: both nodes, capacity and load as bars, version, heartbeat, the camera where it runs
    page.click('button.tab[data-page="nodes"]')
    card = page.locator(f'.node-card[data-node="{node}"]')
    expect(card).to_be_visible()
    expect(page.locator(".node-card")).to_have_count(2)
    expect(card.locator(".bar")).to_have_count(2)
    expect(card.locator(".node-state")).to_have_text("alive")
    facts = re.compile(r"version test · last heartbeat \d+ s ago")
    expect(card.locator(".node-facts")).to_contain_text(facts)
    expect(card.locator(".node-cameras")).to_contain_text("door")
    decode_bar = f'.node-card[data-node="{node}"] .bar'  # the node running the camera: some decode load
    page.wait_for_function(f"() => Number(document.querySelector('{decode_bar}')?.dataset.fraction) > 0")
    expect(page.locator(f'.node-card[data-node="{other}"] .node-cameras')).to_have_text("no cameras")
    page.screenshot(path=str(ARTIFACTS / "ui-fleet-nodes.png"), full_page=True)

    # the grid: the tile names its node and says why there is no picture (media answers 503 for now)
    page.click('button.tab[data-page="live"]')
    tile = page.locator('#grid .card[data-camera="door"]')
    expect(tile.locator(".node")).to_have_text(f"on {node}")
    expect(tile.locator(".media-note")).to_contain_text(f"node {node} serves no API")
    page.screenshot(path=str(ARTIFACTS / "ui-fleet-live.png"))

    # drain the camera's node from the page: its state changes, the camera moves to the other node
    page.click('button.tab[data-page="nodes"]')
    card.locator("button.node-drain").click()
    expect(card.locator(".node-state")).to_have_text("draining")
    expect(card.locator("button.node-uncordon")).to_be_visible()
    expect(card.locator(".node-cameras")).to_have_text("no cameras", timeout=30_000)
    expect(page.locator(f'.node-card[data-node="{other}"] .node-cameras')).to_contain_text("door")
    page.screenshot(path=str(ARTIFACTS / "ui-fleet-drained.png"), full_page=True)
    page.click('button.tab[data-page="live"]')
    expect(tile.locator(".node")).to_have_text(f"on {other}")
    expect(tile.locator(".media-note")).to_contain_text(f"node {other} serves no API")
    tile.locator("a.open").click()  # the camera's page says the same
    expect(page.locator("#cam-node")).to_have_text(f"on {other}")
    expect(page.locator("#cam-media")).to_contain_text(f"node {other} serves no API")
    page.click("#edit-toggle")  # its editor's apply says where it runs
    page.click("#edit-apply")
    expect(page.locator("#edit-status")).to_contain_text(f"runs on {other}")
    page.click("#edit-toggle")
    page.click("#cam-recordings")  # and its recordings
    expect(page.locator("#rec-error")).to_contain_text(f"no recordings here: node {other} serves no API")
    page.click('button.tab[data-page="nodes"]')
    card.locator("button.node-uncordon").click()
    expect(card.locator(".node-state")).to_have_text("alive")

    # events of both nodes in one list, each with its node
    now = time.time()
    events = [Event(id=f"ev{i}", camera="door", label="person", start=now - i, end=now - i + 1, top_score=0.8,
                    snapshot="/x.jpg") for i in (1, 2)]
    store_batch(store.engine, [Incoming(n, i, "door", EventMessage("end", events[i - 1]), None, now)
                               for i, n in enumerate(["node-a", "node-b"], start=1)])
    page.click('button.tab[data-page="events"]')
    for n in ("node-a", "node-b"):
        item = page.locator(f'#events li[data-node="{n}"]')
        expect(item).to_contain_text(f"node {n}")
        # the snapshot stays on its node: the thumbnail says where instead of a broken picture
        expect(item.locator(".noshot")).to_have_text(f"snapshot on {n}")
        expect(item.locator("input.reviewed")).to_be_hidden()  # not kept centrally yet (501): not offered
    page.select_option("#filter-node", "node-a")  # only one node's events
    page.click('#event-filters button[type="submit"]')
    expect(page.locator("#events li")).to_have_count(1)
    expect(page.locator("#events li").first).to_have_attribute("data-node", "node-a")
    page.select_option("#filter-node", "")
    page.click('#event-filters button[type="submit"]')
    expect(page.locator("#events li")).to_have_count(2)
    page.locator('#events li[data-node="node-b"] button', has_text="clip").click()
    expect(page.locator("#detail-title")).to_contain_text("node node-b")
    expect(page.locator("#clip-error")).to_contain_text("node node-b serves no API")
    page.screenshot(path=str(ARTIFACTS / "ui-fleet-events.png"), full_page=True)

    # a second camera: apply names where it went, not every camera of the fleet again
    page.click('button.tab[data-page="cameras"]')
    page.click("#camera-new")
    page.fill("#cam-name", "yard")
    page.fill("#cam-url", "rtsp://10.0.0.8/yard")
    page.click("#cam-save")
    expect(page.locator("#changes")).to_contain_text("add yard")
    page.click("#apply")
    expect(result).to_contain_text(re.compile(r"placed yard on node-[ab]"))
    assert "door on" not in (result.text_content() or "")

    # a viewer sees the nodes but gets no buttons to change them
    viewer = store.create_token("wall", "viewer")
    wall = page.context.new_page()
    errors: list[str] = []
    wall.on("pageerror", lambda exc: errors.append(str(exc)))
    wall.add_init_script(f"localStorage.setItem('camfleet_token', {viewer!r})")
    wall.goto(f"{url}/#nodes")
    expect(wall.locator(".node-card")).to_have_count(2)
    expect(wall.locator(".node-card .node-state").first).to_have_text("alive")
    expect(wall.locator(".node-card button")).to_have_count(0)
    wall.set_viewport_size({"width": 390, "height": 844})  # a phone: the page is no wider than the screen
    wall.wait_for_timeout(300)  # a frame or two to lay out (nothing to wait on: the layout is the check)
    assert wall.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 1
    wall.screenshot(path=str(ARTIFACTS / "ui-fleet-phone-nodes.png"), full_page=True)
    assert errors == [], errors
